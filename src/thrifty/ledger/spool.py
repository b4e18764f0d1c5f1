"""The ledger's spool: rows the store could not take yet, on disk, replayed when it can.

When the store fails (PostgreSQL restarting, a full disk), rows are not kept in memory and
retried forever: they are appended to the spool file (fsynced) and the writer replays the file
in order as soon as the store answers again, while running, and at the next start. Memory stays
bounded whatever the outage's length; no row is dropped.

The spool lives in the ledger's *spool directory*: `ledger.spool_dir`, or by default a folder
derived from the store -- beside a SQLite file (`thrifty.db` -> `thrifty.db.spool/`), or for
PostgreSQL under `$XDG_STATE_HOME/thrifty/` (default `~/.local/state/thrifty/`) named after the
server and database -- never the working directory, so a service restarted elsewhere finds it.
The journal's segments (see `thrifty.ledger.journal`) live in the same directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

from thrifty.ledger.journal import decode
from thrifty.ledger.record import LedgerRecord
from thrifty.urls import sqlite_path

__all__ = ["Spool", "claim_dir", "default_spool_dir"]

log = logging.getLogger(__name__)


def default_spool_dir(store_url: str) -> Path:
    """The spool directory for the ledger store at `store_url` (see the module's docstring)."""
    path = sqlite_path(store_url)
    if path is not None:
        if path == ":memory:":
            return _state_home() / "memory-ledger.spool"
        p = Path(path).resolve()
        return p.with_name(p.name + ".spool")
    parts = urlsplit(store_url)
    safe = f"{parts.scheme}://{parts.username or ''}@{parts.hostname or ''}:{parts.port or ''}{parts.path}?{parts.query}"
    digest = hashlib.sha256(safe.encode()).hexdigest()[:10]  # the password never enters the name
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{parts.hostname or 'local'}-{parts.port or 5432}{parts.path}")
    return _state_home() / f"pg-{label.strip('_')}-{digest}.spool"


def claim_dir(base: Path) -> tuple[Path, int]:
    """A spool directory no other running process uses: `base` itself, or else the first free
    `base/replica-N` (two gateways on one host may share a store). Held by an flock on its
    `owner.lock` until the returned descriptor is closed; a crashed process's directory is
    claimed, and its leftovers replayed, by the next process that starts."""
    import fcntl

    for n in range(0, 1000):
        directory = base if n == 0 else base / f"replica-{n}"
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return directory, fd
    raise RuntimeError(f"no free ledger spool directory under {base}")


def _state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "thrifty"


class Spool:
    """An append-only JSONL file of rows waiting for the store. Thread-safe.

    `append` adds lines and fsyncs; `read` returns the next rows from a read offset that only
    `advance` moves (after the store took them); `finish` deletes the file once every line in it
    was replayed, unless rows were appended meanwhile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._offset = 0
        #: Rows in the file not replayed yet.
        self.rows = 0
        if path.exists():
            with path.open("rb") as f:
                self.rows = sum(1 for line in f if line.strip())
            if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                # a crash cut the last append: end that line so the next rows start their own
                with path.open("ab") as f:
                    f.write(b"\n")

    def append(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        if not data:
            return
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            self.rows += len(lines)

    def read(self, max_rows: int) -> tuple[list[LedgerRecord], int]:
        """Up to `max_rows` rows from the read offset, and the offset after them."""
        with self._lock:
            if not self.rows or not self.path.exists():
                return [], self._offset
            offset = self._offset
        records: list[LedgerRecord] = []
        with self.path.open("rb") as f:
            f.seek(offset)
            while len(records) < max_rows:
                line = f.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):  # another thread is appending it right now
                    break
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    records.append(decode(line))
                except (ValueError, TypeError) as exc:  # a line torn by a crash before this start
                    log.error("ledger spool %s: skipped an unreadable line (%s): %.200r", self.path, exc, line)
        return records, offset

    def advance(self, offset: int, rows: int) -> None:
        """The rows up to `offset` are in the store."""
        with self._lock:
            self._offset = offset
            self.rows = max(0, self.rows - rows)
            if self.path.exists() and self.path.stat().st_size <= offset:
                self.path.unlink()
                self._offset = 0
                self.rows = 0
