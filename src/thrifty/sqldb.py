"""One connection to thrifty's store (SQLite or PostgreSQL) for a component's own tables.

The ledger has its own batched writer; the response store and the embedding cache only
need small synchronous statements on the same database, committed before they return,
with their schema kept by named migrations. This is that, once: the store URL is read as
the ledger reads it, statements use `?` placeholders on either dialect, and a lock makes
the connection safe to share between threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thrifty.migrations import Dialect, Migration, migrate
from thrifty.urls import sqlite_path

__all__ = ["SQLDatabase"]


class SQLDatabase:
    """A locked connection to the store at `url`, migrated for `component`. Blocking."""

    def __init__(self, url: str, component: str, migrations: Sequence[Migration]) -> None:
        self._lock = threading.Lock()
        self.dialect: Dialect
        self._conn: Any
        path = sqlite_path(url)
        if path is not None:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.dialect = "sqlite"
            self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # as the ledger: durable against a crash of thrifty
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.dialect = "postgresql"
            self._conn = psycopg.connect(url, autocommit=False)
        else:
            raise ValueError(f"unknown store {url!r}: use sqlite:///thrifty.db or postgresql://user@host/db")
        migrate(self._conn, self.dialect, component, migrations)

    @property
    def blob(self) -> str:
        """The column type of binary values."""
        return "BLOB" if self.dialect == "sqlite" else "BYTEA"

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (`?` placeholders) and commit; the rows it returned."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        with self._lock:
            try:
                cur = self._conn.execute(sql, tuple(params))
                rows = cur.fetchall() if cur.description else []
                self._conn.commit()
                return [tuple(r) for r in rows]
            except BaseException:
                self._conn.rollback()
                raise

    def changed(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (`?` placeholders) and commit; the number of rows it changed."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        with self._lock:
            try:
                count = int(self._conn.execute(sql, tuple(params)).rowcount)
                self._conn.commit()
                return count
            except BaseException:
                self._conn.rollback()
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()
