"""Named schema migrations: applied once, recorded, and an old ledger upgrades in place."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from thrifty.cli import main
from thrifty.ledger.record import MIGRATIONS
from thrifty.ledger.store import PostgresStore, SQLiteStore
from thrifty.migrations import Migration, SchemaTooNew, applied, migrate

OLD_LEDGER = Path(__file__).resolve().parent / "ledger" / "data" / "ledger-3a2064e.db"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_a_ledger_written_before_migrations_upgrades_in_place(tmp_path: Path) -> None:
    """A ledger file written by thrifty at 3a2064e (no migrations table) opens, gets every
    migration recorded and applied, and keeps every row and its money exact."""
    path = tmp_path / "old.db"
    shutil.copy(OLD_LEDGER, path)
    with sqlite3.connect(path) as conn:
        before = conn.execute("SELECT request_id, cost_pico, counterfactual_pico FROM requests ORDER BY 1").fetchall()
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'thrifty_migrations'").fetchall()
    store = SQLiteStore(str(path))
    try:
        assert store.count() == len(before) == 25
        with sqlite3.connect(path) as conn:
            after = conn.execute("SELECT request_id, cost_pico, counterfactual_pico FROM requests ORDER BY 1").fetchall()
            assert applied(conn, "sqlite", "ledger") == [m.name for m in MIGRATIONS]
            indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            outcomes = conn.execute("SELECT task, success FROM task_outcomes").fetchall()
        assert after == before
        assert {"requests_key_ts", "requests_tenant_ts"} <= indexes
        assert outcomes == [("task-1", 1)]
    finally:
        store.close()


def test_each_migration_runs_once_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    ran: list[str] = []

    def step(name: str) -> Migration:
        def statements(dialect: str) -> list[str]:
            ran.append(name)
            return [f"CREATE TABLE IF NOT EXISTS {name} (x INTEGER)"]

        return Migration(name, statements)

    conn = sqlite3.connect(tmp_path / "m.db")
    assert migrate(conn, "sqlite", "demo", [step("demo_1")]) == ["demo_1"]
    assert migrate(conn, "sqlite", "demo", [step("demo_1"), step("demo_2")]) == ["demo_2"]
    assert migrate(conn, "sqlite", "demo", [step("demo_1"), step("demo_2")]) == []
    assert ran == ["demo_1", "demo_2"]
    with pytest.raises(SchemaTooNew, match="demo_2"):
        migrate(conn, "sqlite", "demo", [step("demo_1")])  # an older thrifty meets this database
    conn.close()


def test_postgres_ledger_records_its_migrations() -> None:
    store = PostgresStore(PG_URL)
    try:
        rows = store.execute("SELECT name FROM thrifty_migrations WHERE component = 'ledger' ORDER BY name")
        assert [r[0] for r in rows] == sorted(m.name for m in MIGRATIONS)
    finally:
        store.close()


def test_db_upgrade_and_status_commands(tmp_path: Path) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    shutil.copy(OLD_LEDGER, path)
    runner = CliRunner()
    status = runner.invoke(main, ["db", "status", "--store", f"sqlite:///{path}"])
    assert status.exit_code == 0, status.output
    assert "ledger: ledger_0001_initial: pending" in status.output
    up = runner.invoke(main, ["db", "upgrade", "--store", f"sqlite:///{path}"])
    assert up.exit_code == 0, up.output
    assert "ledger: applied ledger_0002_spend_indexes" in up.output
    again = runner.invoke(main, ["db", "upgrade", "--store", f"sqlite:///{path}"])
    assert "ledger: up to date" in again.output
