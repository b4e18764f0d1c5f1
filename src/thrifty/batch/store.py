"""Durable batch state: files, jobs, lines with leases, provider batches.

Why a lease and not a lock: a worker that dies (SIGKILL, a lost spot node) holds nothing
forever; its lines come back to the pool when `lease_until` passes, and any process that
opens the same store picks them up. Why a conditional UPDATE for settlement: whoever
observes a line's completion first (a worker, a poller, a restarted process) wins, and the
others' UPDATE changes no row, so a line is settled, and billed, exactly once.

SQLite claims in a `BEGIN IMMEDIATE` transaction (one writer at a time across processes);
PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so replicas never wait on each other's
lines. Every method blocks: call it from a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thrifty.batch.schema import MIGRATIONS
from thrifty.migrations import migrate
from thrifty.urls import sqlite_path

__all__ = ["FINAL", "JOB_COLUMNS", "LINE_COLUMNS", "BatchStore", "open_batch_store"]

JOB_COLUMNS = (
    "id", "protocol", "endpoint", "input_file_id", "status", "target", "created_at", "deadline_at",
    "started_at", "finished_at", "cancel_requested", "key_name", "tenant", "metadata", "lines",
    "reserved_pico", "output_file_id", "error_file_id",
)  # fmt: skip
LINE_COLUMNS = (
    "job_id", "idx", "custom_id", "body", "state", "lease_owner", "lease_until", "attempts",
    "answered_by", "executed_where", "served_model", "status", "result", "error", "cost_pico",
    "list_pico", "ledger", "provisional", "billed", "settled_at",
)  # fmt: skip
#: Line states that are settled for good.
FINAL = ("done", "failed", "cancelled")


class BatchStore:
    """The batch tables of one store URL (`sqlite:///...` or `postgresql://...`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        path = sqlite_path(url)
        if path is not None:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.dialect = "sqlite"
            conn = sqlite3.connect(path, check_same_thread=False, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn, "sqlite", "batch", MIGRATIONS, where=path)
            conn.isolation_level = None  # explicit BEGIN IMMEDIATE below
            self._conn: Any = conn
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.dialect = "postgresql"
            conn_pg = psycopg.connect(url, autocommit=False)
            migrate(conn_pg, "postgresql", "batch", MIGRATIONS)
            conn_pg.autocommit = True
            self._conn = conn_pg
        else:
            raise ValueError(f"unknown store {url!r}: use sqlite:///thrifty.db or postgresql://user@host/db")

    # -- plumbing ------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(sql), list(params))

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction (SQLite: taken at once, so claims across processes serialize)."""
        with self._lock:
            if self.dialect == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            else:
                with self._conn.transaction():
                    yield

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._run(sql, params).fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- files ---------------------------------------------------------------------------

    def put_file(self, file_id: str, purpose: str, filename: str, content: str) -> dict[str, Any]:
        now = time.time()
        with self._tx():
            self._run("INSERT INTO batch_files (id, purpose, filename, bytes, created_at, content) VALUES (?, ?, ?, ?, ?, ?)",
                      (file_id, purpose, filename, len(content.encode()), now, content))
        return {"id": file_id, "purpose": purpose, "filename": filename, "bytes": len(content.encode()), "created_at": now}

    def get_file(self, file_id: str, *, content: bool = False) -> dict[str, Any] | None:
        cols = "id, purpose, filename, bytes, created_at" + (", content" if content else "")
        rows = self._all(f"SELECT {cols} FROM batch_files WHERE id = ?", (file_id,))
        if not rows:
            return None
        return dict(zip(cols.split(", "), rows[0], strict=True))

    # -- jobs ----------------------------------------------------------------------------

    def create_job(self, job: dict[str, Any], lines: Sequence[tuple[int, str, str]],
                   files: Sequence[tuple[str, str, str, str]] = ()) -> None:
        """Insert the job, all its lines (and any files it owns) in one transaction:
        nothing half-created."""
        cols = [c for c in JOB_COLUMNS if c in job]
        with self._tx():
            for file_id, purpose, filename, content in files:
                self._run("INSERT INTO batch_files (id, purpose, filename, bytes, created_at, content) VALUES (?, ?, ?, ?, ?, ?)",
                          (file_id, purpose, filename, len(content.encode()), time.time(), content))
            self._run(f"INSERT INTO batch_jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                      [job[c] for c in cols])
            rows = [(job["id"], idx, cid, body, "pending") for idx, cid, body in lines]
            if self.dialect == "sqlite":
                self._conn.executemany(
                    "INSERT INTO batch_lines (job_id, idx, custom_id, body, state) VALUES (?, ?, ?, ?, ?)", rows)
            else:
                with self._conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO batch_lines (job_id, idx, custom_id, body, state) VALUES (%s, %s, %s, %s, %s)", rows)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._all(f"SELECT {', '.join(JOB_COLUMNS)} FROM batch_jobs WHERE id = ?", (job_id,))
        return dict(zip(JOB_COLUMNS, rows[0], strict=True)) if rows else None

    def list_jobs(self, protocol: str | None = None, limit: int = 20, after: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        if protocol:
            where.append("protocol = ?")
            params.append(protocol)
        if after:
            where.append("created_at < (SELECT created_at FROM batch_jobs WHERE id = ?)")
            params.append(after)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self._all(f"SELECT {', '.join(JOB_COLUMNS)} FROM batch_jobs {clause} ORDER BY created_at DESC, id DESC "
                         f"LIMIT {int(limit)}", params)
        return [dict(zip(JOB_COLUMNS, r, strict=True)) for r in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx():
            self._run(f"UPDATE batch_jobs SET {sets} WHERE id = ?", [*fields.values(), job_id])

    def finish_job(self, job_id: str, status: str, output_file: tuple[str, str] | None,
                   error_file: tuple[str, str] | None) -> bool:
        """Write the output and error files and mark the job ended, once: False when another
        process finished it first."""
        now = time.time()
        with self._tx():
            cur = self._run("UPDATE batch_jobs SET status = ?, finished_at = ?, output_file_id = ?, error_file_id = ? "
                            "WHERE id = ? AND finished_at IS NULL",
                            (status, now, output_file[0] if output_file else None,
                             error_file[0] if error_file else None, job_id))
            if cur.rowcount != 1:
                return False
            for fid, content in (f for f in (output_file, error_file) if f is not None):
                self._run("INSERT INTO batch_files (id, purpose, filename, bytes, created_at, content) "
                          "VALUES (?, ?, ?, ?, ?, ?)",
                          (fid, "batch_output", f"{job_id}_{fid}.jsonl", len(content.encode()), now, content))
        return True

    def unfinished_jobs(self) -> list[str]:
        return [r[0] for r in self._all("SELECT id FROM batch_jobs WHERE finished_at IS NULL ORDER BY created_at")]

    def request_cancel(self, job_id: str) -> None:
        with self._tx():
            self._run("UPDATE batch_jobs SET cancel_requested = 1, status = CASE WHEN finished_at IS NULL "
                      "THEN 'cancelling' ELSE status END WHERE id = ?", (job_id,))
            self._run("UPDATE batch_lines SET state = 'cancelled', error = 'the batch was cancelled', settled_at = ? "
                      "WHERE job_id = ? AND state = 'pending'", (time.time(), job_id))

    # -- lines ---------------------------------------------------------------------------

    def claim(self, job_id: str, owner: str, n: int, lease_s: float) -> list[tuple[int, str, str, str | None]]:
        """Lease up to `n` lines that are pending or whose lease ran out: (idx, custom_id, body,
        provisional answer)."""
        now = time.time()
        until = now + lease_s
        with self._tx():
            if self.dialect == "sqlite":
                rows = self._run(
                    "SELECT idx FROM batch_lines WHERE job_id = ? AND (state = 'pending' OR "
                    "(state = 'leased' AND lease_until < ?)) ORDER BY idx LIMIT ?", (job_id, now, n)).fetchall()
                idxs = [r[0] for r in rows]
                if not idxs:
                    return []
                marks = ", ".join("?" * len(idxs))
                self._run(f"UPDATE batch_lines SET state = 'leased', lease_owner = ?, lease_until = ?, "
                          f"attempts = attempts + 1 WHERE job_id = ? AND idx IN ({marks})", (owner, until, job_id, *idxs))
                got = self._run(f"SELECT idx, custom_id, body, provisional FROM batch_lines WHERE job_id = ? "
                                f"AND idx IN ({marks}) ORDER BY idx", (job_id, *idxs)).fetchall()
            else:
                got = self._run(
                    "UPDATE batch_lines SET state = 'leased', lease_owner = ?, lease_until = ?, attempts = attempts + 1 "
                    "WHERE job_id = ? AND idx IN (SELECT idx FROM batch_lines WHERE job_id = ? AND "
                    "(state = 'pending' OR (state = 'leased' AND lease_until < ?)) ORDER BY idx LIMIT ? "
                    "FOR UPDATE SKIP LOCKED) RETURNING idx, custom_id, body, provisional",
                    (owner, until, job_id, job_id, now, n)).fetchall()
                got = sorted(got)
        return [(int(i), str(c), str(b), p) for i, c, b, p in got]

    def set_provisional(self, job_id: str, idx: int, answer: str) -> None:
        """Keep a line's upstream answer the moment it arrives, before any lever stores it in
        a cache: a process killed before settling the line settles it from this on resume,
        billed, instead of asking again or finding it in the cache for free."""
        with self._tx():
            self._run("UPDATE batch_lines SET provisional = ? WHERE job_id = ? AND idx = ? "
                      "AND state NOT IN ('done', 'failed', 'cancelled')", (answer, job_id, idx))

    def renew(self, job_id: str, owner: str, idxs: Sequence[int], lease_s: float) -> None:
        if not idxs:
            return
        marks = ", ".join("?" * len(idxs))
        with self._tx():
            self._run(f"UPDATE batch_lines SET lease_until = ? WHERE job_id = ? AND lease_owner = ? AND state = 'leased' "
                      f"AND idx IN ({marks})", (time.time() + lease_s, job_id, owner, *idxs))

    def release(self, job_id: str, idx: int, owner: str, error: str | None = None) -> None:
        """Give a leased line back to the pool (to retry it later)."""
        with self._tx():
            self._run("UPDATE batch_lines SET state = 'pending', lease_owner = NULL, lease_until = NULL, error = ? "
                      "WHERE job_id = ? AND idx = ? AND state = 'leased' AND lease_owner = ?", (error, job_id, idx, owner))

    def lease_owners(self, job_id: str) -> list[str]:
        return [str(r[0]) for r in self._all(
            "SELECT DISTINCT lease_owner FROM batch_lines WHERE job_id = ? AND state = 'leased'", (job_id,))]

    def release_owner(self, job_id: str, owner: str) -> int:
        """Return every line `owner` holds to the pool (a worker known to be dead)."""
        with self._tx():
            cur = self._run("UPDATE batch_lines SET state = 'pending', lease_owner = NULL, lease_until = NULL "
                            "WHERE job_id = ? AND state = 'leased' AND lease_owner = ?", (job_id, owner))
            return int(cur.rowcount)

    def settle(self, job_id: str, idx: int, **fields: Any) -> bool:
        """Settle a line (state done or failed, with its result, cost and ledger row), once.
        True for the caller that settled it; False when someone else was first."""
        fields = {**fields, "settled_at": time.time(), "lease_owner": None, "lease_until": None}
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx():
            cur = self._run(f"UPDATE batch_lines SET {sets} WHERE job_id = ? AND idx = ? "
                            f"AND state NOT IN ('done', 'failed', 'cancelled')", [*fields.values(), job_id, idx])
            return bool(cur.rowcount == 1)

    def unbilled(self, job_id: str) -> list[tuple[int, str]]:
        """Settled lines whose ledger row may not have been written yet."""
        return [(int(i), str(led)) for i, led in self._all(
            "SELECT idx, ledger FROM batch_lines WHERE job_id = ? AND billed = 0 AND ledger IS NOT NULL ORDER BY idx",
            (job_id,))]

    def mark_billed(self, job_id: str, idxs: Sequence[int]) -> None:
        if not idxs:
            return
        with self._tx():
            for start in range(0, len(idxs), 500):
                part = idxs[start : start + 500]
                self._run(f"UPDATE batch_lines SET billed = 1 WHERE job_id = ? AND idx IN ({', '.join('?' * len(part))})",
                          (job_id, *part))

    def queue_depth(self) -> int:
        """Lines of every job still to run (waiting or leased): what a batch autoscaler reads."""
        # only unfinished jobs' lines, along the (job_id, state) index: finished jobs' lines
        # pile up for good, and a scrape must not scan them
        return int(self._all(
            "SELECT COUNT(*) FROM batch_lines WHERE job_id IN (SELECT id FROM batch_jobs WHERE finished_at IS NULL) "
            "AND state IN ('pending', 'leased')")[0][0])

    def counts(self, job_id: str) -> dict[str, int]:
        """Lines per state; failed lines whose deadline passed count as `expired`."""
        return {str(s): int(n) for s, n in self._all(
            "SELECT CASE WHEN state = 'failed' AND status = 408 THEN 'expired' ELSE state END AS s, COUNT(*) "
            "FROM batch_lines WHERE job_id = ? GROUP BY s", (job_id,))}

    def lines(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._all(f"SELECT {', '.join(LINE_COLUMNS)} FROM batch_lines WHERE job_id = ? ORDER BY idx", (job_id,))
        return [dict(zip(LINE_COLUMNS, r, strict=True)) for r in rows]

    def line(self, job_id: str, idx: int) -> dict[str, Any] | None:
        rows = self._all(f"SELECT {', '.join(LINE_COLUMNS)} FROM batch_lines WHERE job_id = ? AND idx = ?", (job_id, idx))
        return dict(zip(LINE_COLUMNS, rows[0], strict=True)) if rows else None

    def money(self, job_id: str) -> tuple[int, int]:
        """(cost, list-price cost) of the settled lines, in picodollars."""
        rows = self._all("SELECT COALESCE(SUM(cost_pico), 0), COALESCE(SUM(list_pico), 0) FROM batch_lines "
                         "WHERE job_id = ?", (job_id,))
        return int(rows[0][0]), int(rows[0][1])

    # -- provider batches ----------------------------------------------------------------

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        cols = ("job_id", "chunk", "model", "tag", "provider_batch_id", "state", "line_idx", "created_at")
        rows = self._all(f"SELECT {', '.join(cols)} FROM batch_provider WHERE job_id = ? ORDER BY chunk", (job_id,))
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def add_chunk(self, job_id: str, chunk: int, model: str, tag: str, line_idx: str) -> bool:
        """Record the intent to submit a provider batch, before submitting it. False when the
        chunk exists already (another process records it)."""
        try:
            with self._tx():
                self._run("INSERT INTO batch_provider (job_id, chunk, model, tag, provider_batch_id, state, line_idx, "
                          "created_at) VALUES (?, ?, ?, ?, NULL, 'submitting', ?, ?)",
                          (job_id, chunk, model, tag, line_idx, time.time()))
            return True
        except Exception as exc:  # the primary key: someone else recorded this chunk
            if "UNIQUE" in str(exc).upper() or "duplicate key" in str(exc):
                return False
            raise

    def update_chunk(self, job_id: str, chunk: int, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx():
            self._run(f"UPDATE batch_provider SET {sets} WHERE job_id = ? AND chunk = ?", [*fields.values(), job_id, chunk])


def open_batch_store(url: str) -> BatchStore:
    return BatchStore(url)
