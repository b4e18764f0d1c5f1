"""Ledger stores: SQLite (default, WAL) and PostgreSQL behind one interface.

Writes come in batches from the `LedgerWriter` thread; reads (spend reports, dashboards,
audits) open their own connections so they never wait on the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from thrifty.ledger.record import COLUMNS, MIGRATIONS, LedgerRecord, from_pico, to_pico
from thrifty.migrations import migrate
from thrifty.urls import redacted, sqlite_path

#: Dimensions `spend` can group by, and the SQL expression of each.
GROUPS = {
    "model": "requested_model",
    "served_model": "served_model",
    "provider": "provider",
    "route": "route",
    "feature": "COALESCE(feature, '-')",
    "key": "COALESCE(key_name, '-')",
    "tenant": "tenant",
    "status": "status",
}


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def record_row(r: LedgerRecord) -> tuple[Any, ...]:
    saved = sum(r.savings.values(), Decimal(0))
    return (
        r.request_id, r.ts, r.protocol, r.requested_model, r.served_model, r.provider, r.status,
        r.outcome, r.key_name, r.tenant, r.route, r.feature, r.task, _json(r.tags), r.error, r.cache,
        r.answered_by, r.input_tokens, r.cache_read_tokens, r.cache_write_tokens,
        r.cache_write_1h_tokens, r.output_tokens, r.reasoning_tokens, r.usage_estimated,
        to_pico(r.cost), to_pico(r.counterfactual_cost), to_pico(saved), float(r.cost),
        float(r.counterfactual_cost), _json({k: str(v) for k, v in r.savings.items()}),
        _json(r.tokens_saved), r.latency_ms, r.ttfb_ms, r.stream, r.finish_reason, _json(r.extra),
        _json(r.request_body) if r.request_body is not None else None,
        _json(r.response_body) if r.response_body is not None else None,
    )  # fmt: skip


class LedgerStore(ABC):
    """Where ledger rows live. Thread-safe; every method may block (call from a thread)."""

    dialect: str = ""

    @abstractmethod
    def write(self, records: Sequence[LedgerRecord]) -> None: ...

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (with `?` placeholders) and return all rows."""

    @abstractmethod
    def close(self) -> None: ...

    def ph(self, sql: str) -> str:
        return sql

    def count(self) -> int:
        return int(self.execute("SELECT COUNT(*) FROM requests")[0][0])

    def spend(
        self, by: str = "model", since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Spend grouped by `by` (see GROUPS, or `day`), biggest first."""
        if by == "day":
            expr = (
                "date(ts, 'unixepoch')"
                if self.dialect == "sqlite"
                else "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            )
        elif by in GROUPS:
            expr = GROUPS[by]
        else:
            raise ValueError(f"cannot group spend by {by!r}; choose one of {', '.join([*GROUPS, 'day'])}")
        where, params = _window(since, until)
        rows = self.execute(
            f"""SELECT {expr} AS k, COUNT(*), SUM(input_tokens + cache_read_tokens + cache_write_tokens
                + cache_write_1h_tokens), SUM(output_tokens), SUM(cost_pico), SUM(counterfactual_pico),
                SUM(saved_pico), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)
                FROM requests {where} GROUP BY k ORDER BY SUM(cost_pico) DESC, k""",
            params,
        )
        return [
            {
                by: k,
                "requests": int(n),
                "input_tokens": int(tin or 0),
                "output_tokens": int(tout or 0),
                "cost": from_pico(c),
                "counterfactual_cost": from_pico(cf),
                "saved": from_pico(s),
                "errors": int(e or 0),
            }
            for k, n, tin, tout, c, cf, s, e in rows
        ]

    def savings_by_lever(self, since: float | None = None, until: float | None = None) -> dict[str, Decimal]:
        where, params = _window(since, until)
        # Most requests save nothing ("{}"): leave them in the database instead of parsing them here.
        where = f"{where} AND savings <> '{{}}'" if where else "WHERE savings <> '{}'"
        totals: dict[str, Decimal] = {}
        for (savings,) in self.execute(f"SELECT savings FROM requests {where}", params):
            for lever, amount in orjson.loads(savings).items():
                totals[lever] = totals.get(lever, Decimal(0)) + Decimal(amount)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def rows(self, since: float | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        where, params = _window(since, None)
        sql = f"SELECT {', '.join(COLUMNS)} FROM requests {where} ORDER BY ts"
        if limit:
            sql += f" LIMIT {int(limit)}"
        for row in self.execute(sql, params):
            yield dict(zip(COLUMNS, row, strict=True))

    @abstractmethod
    def record_outcome(self, task: str, success: bool, score: float | None, note: str | None, ts: float) -> None:
        """Record whether task `task` (the `X-Thrifty-Task` header) ended well."""

    def prune(self, before: float, batch: int = 10_000, progress: Callable[[int], None] | None = None) -> int:
        """Delete the rows older than `before` (a unix time), oldest first, `batch` rows per
        transaction, and task outcomes as old. Each batch walks the `ts` index, so the cost is
        the rows deleted, not the table's size, and no transaction holds locks for long: the
        gateway keeps writing meanwhile. Returns how many request rows were deleted."""
        total = 0
        while True:
            n = self._delete_oldest(before, batch)
            total += n
            if progress is not None:
                progress(n)
            if n < batch:
                break
        self._delete_outcomes(before)
        return total

    def count_before(self, before: float) -> int:
        return int(self.execute("SELECT COUNT(*) FROM requests WHERE ts < ?", [before])[0][0])

    @abstractmethod
    def _delete_oldest(self, before: float, limit: int) -> int: ...

    @abstractmethod
    def _delete_outcomes(self, before: float) -> None: ...


def _window(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


class SQLiteStore(LedgerStore):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        migrate(self._conn, "sqlite", "ledger", MIGRATIONS, where=self.path)
        self._lock = threading.Lock()
        row = f"({', '.join('?' * len(COLUMNS))})"
        self._insert_head = f"INSERT OR REPLACE INTO requests ({', '.join(COLUMNS)}) VALUES "
        self._row_sql = row
        # One statement carries many rows, as many as SQLite's bound-variable limit allows.
        limit = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_statement = max(1, min(256, limit // len(COLUMNS)))
        self._statements: dict[int, str] = {}

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def write(self, records: Sequence[LedgerRecord]) -> None:
        """Insert `records` in one transaction, many rows per statement.

        `executemany` steps SQLite once per row and hands Python's GIL back and forth around
        every step; under load that handover, not the insert, is what costs the event loop.
        A multi-row VALUES list takes one step for a few hundred rows."""
        rows = [record_row(r) for r in records]
        n = self._rows_per_statement
        with self._lock, self._conn:
            for start in range(0, len(rows), n):
                chunk = rows[start : start + n]
                params = [value for row in chunk for value in row]
                self._conn.execute(self._statement(len(chunk)), params)

    def _statement(self, rows: int) -> str:
        sql = self._statements.get(rows)
        if sql is None:
            sql = self._statements[rows] = self._insert_head + ", ".join([self._row_sql] * rows)
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, list(params)).fetchall()

    def _delete_oldest(self, before: float, limit: int) -> int:
        with self._lock, self._conn:
            cur = self._conn.execute(
                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE ts < ? ORDER BY ts LIMIT ?)",
                (before, limit),
            )
            return int(cur.rowcount)

    def _delete_outcomes(self, before: float) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM task_outcomes WHERE ts < ?", (before,))

    def record_outcome(self, task: str, success: bool, score: float | None, note: str | None, ts: float) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO task_outcomes (task, ts, success, score, note) VALUES (?, ?, ?, ?, ?)",
                (task, ts, int(success), score, note),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore(LedgerStore):
    """PostgreSQL. One connection, opened again after it breaks (a server restart, a network
    cut): each call checks it first, and a failure that leaves it unusable closes it, so the
    next call (the writer's retry) reconnects instead of failing forever."""

    dialect = "postgresql"

    #: Seconds to wait for a connection; a dead server must not hold the writer long.
    CONNECT_TIMEOUT = 3

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        #: Connections opened since start (1 + reconnections).
        self.connects = 0
        migrate(self._connection(), "postgresql", "ledger", MIGRATIONS, where=redacted(url))
        cols = ", ".join(COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        self._insert = (
            f"INSERT INTO requests ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
            f"ON CONFLICT (request_id) DO UPDATE SET {updates}"
        )

    def _connection(self) -> Any:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conn = None
            conn = psycopg.connect(self.url, autocommit=False, connect_timeout=self.CONNECT_TIMEOUT)
            self._conn = conn
            self.connects += 1
        return conn

    def _failed(self, conn: Any) -> None:
        """Roll back after a failure; drop the connection if it is no longer usable."""
        try:
            conn.rollback()
        except Exception:
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            return
        if conn.closed or conn.broken:
            self._conn = None

    def write(self, records: Sequence[LedgerRecord]) -> None:
        rows = [record_row(r) for r in records]
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    cur.executemany(self._insert, rows)
                conn.commit()
            except Exception:
                self._failed(conn)
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.replace("?", "%s"), list(params))  # type: ignore[arg-type,unused-ignore]
                    rows = cur.fetchall() if cur.description else []
                conn.commit()
                return [tuple(r) for r in rows]
            except Exception:
                self._failed(conn)
                raise

    def _modify(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, list(params))
                    n = int(cur.rowcount)
                conn.commit()
                return n
            except Exception:
                self._failed(conn)
                raise

    def _delete_oldest(self, before: float, limit: int) -> int:
        return self._modify(
            "DELETE FROM requests WHERE request_id IN "
            "(SELECT request_id FROM requests WHERE ts < %s ORDER BY ts LIMIT %s)", (before, limit))

    def _delete_outcomes(self, before: float) -> None:
        self._modify("DELETE FROM task_outcomes WHERE ts < %s", (before,))

    def record_outcome(self, task: str, success: bool, score: float | None, note: str | None, ts: float) -> None:
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO task_outcomes (task, ts, success, score, note) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (task) DO UPDATE SET ts = EXCLUDED.ts, success = EXCLUDED.success, "
                        "score = EXCLUDED.score, note = EXCLUDED.note",
                        (task, ts, success, score, note),
                    )
                conn.commit()
            except Exception:
                self._failed(conn)
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None


def open_store(url: str) -> LedgerStore:
    """Open the store named by `url`: `sqlite:///path.db`, `sqlite://:memory:`, or `postgresql://...`."""
    path = sqlite_path(url)
    if path is not None:
        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError(f"unknown store {url!r}: use sqlite:///thrifty.db or postgresql://user@host/db")
