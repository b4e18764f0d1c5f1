"""`thrifty db`: see and apply the schema migrations of every table thrifty owns.

The stores apply pending migrations themselves when they open (at `thrifty serve` start), so
`db upgrade` is for doing it ahead of a rollout, or for a database a replica cannot alter at
start (a read-only role at run time, a change window). `db status` says what is applied.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from thrifty.config import ConfigError, load_config
from thrifty.migrations import Dialect, Migration, applied, migrate
from thrifty.urls import sqlite_path

__all__ = ["db"]


@dataclass(frozen=True)
class Schema:
    """One component's tables in one database."""

    component: str
    url: str
    steps: Sequence[Migration]


def schemas(store: str, config_path: str | None) -> list[Schema]:
    """The ledger (with spend control, batches and shadow evaluation on PostgreSQL), and the
    SQLite cache and shadow files where the config uses them."""
    from thrifty.batch.schema import MIGRATIONS as BATCH_MIGRATIONS
    from thrifty.cache.stores import CACHE_MIGRATIONS, default_sqlite_path
    from thrifty.evals.shadow import SHADOW_MIGRATIONS, shadow_location
    from thrifty.ledger.record import MIGRATIONS
    from thrifty.spend.keys import MIGRATIONS as SPEND_MIGRATIONS

    found = [Schema("ledger", store, MIGRATIONS), Schema("spend", store, SPEND_MIGRATIONS),
             Schema("batch", store, BATCH_MIGRATIONS)]  # spend and batch: the ledger's store
    cache = default_sqlite_path(store)
    if cache.exists():
        found.append(Schema("response_cache", f"sqlite:///{cache}", CACHE_MIGRATIONS))
    configured = load_config(config_path).section("shadow").get("db") if config_path else None
    where = shadow_location(configured, store)
    if where.startswith(("postgres://", "postgresql://", "sqlite://")):
        found.append(Schema("shadow", where, SHADOW_MIGRATIONS))
    elif Path(where).exists():
        found.append(Schema("shadow", f"sqlite:///{where}", SHADOW_MIGRATIONS))
    return found


@contextmanager
def connect(url: str) -> Iterator[tuple[Any, Dialect]]:
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        try:
            yield conn, "sqlite"
        finally:
            conn.close()
    elif url.startswith(("postgresql://", "postgres://")):
        import psycopg

        pg = psycopg.connect(url, autocommit=False, connect_timeout=10)
        try:
            yield pg, "postgresql"
        finally:
            pg.close()
    else:
        raise click.BadParameter(f"unknown store {url!r}: use sqlite:///thrifty.db or postgresql://user@host/db")


def _store(config_path: str | None, store: str | None) -> str:
    if store:
        return store
    if config_path:
        try:
            return load_config(config_path).store
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    return "sqlite:///thrifty.db"


_options = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THRIFTY_CONFIG",
                 help="Read the stores from this config."),
    click.option("--store", help="The ledger store URL (default: the config's, else sqlite:///thrifty.db)."),
]


def _with_options(fn: Any) -> Any:
    for option in reversed(_options):
        fn = option(fn)
    return fn


@click.group("db")
def db() -> None:
    """Schema migrations of the ledger, spend control, the response cache and shadow evaluation."""


@db.command("upgrade")
@_with_options
def upgrade(config_path: str | None, store: str | None) -> None:
    """Apply every pending migration (the stores also do this when they open)."""
    url = _store(config_path, store)
    for schema in schemas(url, config_path):
        try:
            with connect(schema.url) as (conn, dialect):
                new = migrate(conn, dialect, schema.component, schema.steps, where=schema.url)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        if new:
            for name in new:
                click.echo(f"{schema.component}: applied {name}")
        else:
            click.echo(f"{schema.component}: up to date ({len(schema.steps)} migrations)")


@db.command("status")
@_with_options
def status(config_path: str | None, store: str | None) -> None:
    """List each component's migrations: applied, or pending."""
    url = _store(config_path, store)
    for schema in schemas(url, config_path):
        with connect(schema.url) as (conn, dialect):
            done = set(applied(conn, dialect, schema.component))
            conn.commit()
        for step in schema.steps:
            click.echo(f"{schema.component}: {step.name}: {'applied' if step.name in done else 'pending'}")
        for name in sorted(done - {s.name for s in schema.steps}):
            click.echo(f"{schema.component}: {name}: applied by a newer thrifty (unknown here)")


@db.command("prune")
@_with_options
@click.option("--older-than", "older_than", required=True,
              help="Delete ledger rows older than this: 90d, 12w, 720h, or a date such as 2026-01-01 (UTC).")
@click.option("--batch", default=10_000, show_default=True, help="Rows deleted per transaction.")
@click.option("--dry-run", is_flag=True, help="Only say how many rows would go.")
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
def prune(config_path: str | None, store: str | None, older_than: str, batch: int, dry_run: bool, yes: bool) -> None:
    """Delete old ledger rows (retention), oldest first, a batch per transaction.

    Each batch walks the ledger's `ts` index, so pruning a month out of a large ledger costs
    the rows deleted, not a scan of the table, and the gateway keeps writing meanwhile.
    `thrifty spend` and the dashboard only see what is kept: export first if you need it
    (`thrifty export`). On PostgreSQL, autovacuum reuses the freed space; on SQLite the file
    keeps its size until `VACUUM`.

    \b
    Examples:
      thrifty db prune --older-than 90d --dry-run
      thrifty db prune --older-than 2026-01-01 --config thrifty.yaml --yes
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from thrifty.ledger.spend import parse_since
    from thrifty.ledger.store import open_store

    try:
        before = parse_since(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    if before is None or batch < 1:
        raise click.BadParameter("give an age such as 90d, or a date", param_hint="--older-than")
    ledger = open_store(_store(config_path, store))
    try:
        doomed = ledger.count_before(before)
        when = datetime.fromtimestamp(before, UTC).strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{doomed:,} of {ledger.count():,} ledger rows are older than {when}")
        if dry_run or doomed == 0:
            return
        if not yes:
            click.confirm(f"delete {doomed:,} rows?", abort=True)
        started = time.monotonic()
        with Progress(TextColumn("pruning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as bar:
            task = bar.add_task("prune", total=doomed)
            deleted = ledger.prune(before, batch, progress=lambda n: bar.advance(task, n))
        click.echo(f"deleted {deleted:,} rows in {time.monotonic() - started:.1f} s")
    finally:
        ledger.close()
