"""Named, versioned schema migrations for every table thrifty owns.

Each component (the ledger, shadow evaluation, the SQLite response cache) declares an
ordered list of `Migration`s; `migrate` applies those not yet recorded in the
`thrifty_migrations` table, in order, each in its own transaction, and records it. Stores
run it when they open; `thrifty db upgrade` runs it on demand. A database that records a
migration this code does not know was written by a newer thrifty: `migrate` refuses it
rather than write rows a newer schema does not expect.

The first migration of each component is its original schema with `IF NOT EXISTS`, so a
database created before migrations existed upgrades in place: the first run records it and
applies what came after.

On PostgreSQL, concurrent replicas serialize on an advisory lock, so two replicas starting
at once never apply a migration twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from thrifty.errors import ConfigError

__all__ = ["Dialect", "Migration", "SchemaTooNew", "applied", "migrate"]

Dialect = Literal["sqlite", "postgresql"]

TABLE = "thrifty_migrations"
_ADVISORY_LOCK = 0x74687269667479  # "thrifty"


@dataclass(frozen=True)
class Migration:
    """One schema step: a unique `name` (`<component>_<NNNN>_<what>`) and the statements
    that make it, per dialect."""

    name: str
    statements: Callable[[Dialect], Sequence[str]]


class SchemaTooNew(ConfigError):
    """The database records migrations this thrifty does not know."""


class _Connection(Protocol):
    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


def _ph(dialect: Dialect) -> str:
    return "?" if dialect == "sqlite" else "%s"


def _ensure_table(conn: _Connection, dialect: Dialect) -> None:
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (component TEXT NOT NULL, name TEXT NOT NULL, "
        f"applied_at {real} NOT NULL, PRIMARY KEY (component, name))"
    )


def applied(conn: _Connection, dialect: Dialect, component: str) -> list[str]:
    """Names of the migrations of `component` recorded in the database, oldest first."""
    _ensure_table(conn, dialect)
    rows = conn.execute(
        f"SELECT name FROM {TABLE} WHERE component = {_ph(dialect)} ORDER BY applied_at, name", (component,)
    ).fetchall()
    return [r[0] for r in rows]


def migrate(
    conn: _Connection, dialect: Dialect, component: str, steps: Sequence[Migration], *, where: str = ""
) -> list[str]:
    """Apply the migrations of `component` that `conn` has not recorded; return their names.

    `conn` is a sqlite3 connection or a psycopg connection (not in autocommit mode)."""
    names = [m.name for m in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"{component}: migration names must be unique")
    try:
        if dialect == "postgresql":
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
        done = applied(conn, dialect, component)
        unknown = [n for n in done if n not in names]
        if unknown:
            raise SchemaTooNew(
                f"the {component} schema{' at ' + where if where else ''} was upgraded by a newer thrifty "
                f"(migration {unknown[-1]!r} is unknown here); upgrade thrifty, or point it at another store"
            )
        conn.commit()
        new: list[str] = []
        for step in steps:
            if step.name in done:
                continue
            if dialect == "postgresql":
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
                if step.name in applied(conn, dialect, component):  # another replica was first
                    conn.commit()
                    continue
            for sql in step.statements(dialect):
                conn.execute(sql)
            conn.execute(
                f"INSERT INTO {TABLE} (component, name, applied_at) VALUES ({_ph(dialect)}, {_ph(dialect)}, {_ph(dialect)})",
                (component, step.name, time.time()),
            )
            conn.commit()
            new.append(step.name)
        return new
    except BaseException:
        conn.rollback()
        raise
