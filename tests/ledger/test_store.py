"""The ledger stores, against real SQLite and the real PostgreSQL on this machine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.store import LedgerStore, PostgresStore, SQLiteStore, open_store
from thrifty.ledger.writer import LedgerWriter

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def record(
    model: str = "m", cost: str = "0.001", saved: dict[str, Decimal] | None = None, **kw: object
) -> LedgerRecord:
    saved = saved or {}
    c = Decimal(cost)
    return LedgerRecord(
        request_id="req_" + uuid.uuid4().hex,
        ts=time.time(),
        protocol="openai",
        requested_model=model,
        served_model=model,
        provider="openai",
        status=200,
        outcome="ok",
        input_tokens=10,
        output_tokens=5,
        cost=c,
        counterfactual_cost=c + sum(saved.values(), Decimal(0)),
        savings=saved,
        **kw,  # type: ignore[arg-type]
    )


def _pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    if request.param == "sqlite":
        s: LedgerStore = SQLiteStore(str(tmp_path / "l.db"))
    else:
        if not _pg_available():
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}; start it (see README, Development)")
        s = PostgresStore(PG_URL)
        s.execute("DELETE FROM requests")
    yield s
    s.close()


def test_spend_groups_and_sums_exactly(store: LedgerStore) -> None:
    store.write(
        [
            record("a", "0.1", {"cache": Decimal("0.3")}, route="search"),
            record("a", "0.2", route="chat"),
            record("b", "0.0000001"),
        ]
    )
    by_model = {r["model"]: r for r in store.spend("model")}
    assert by_model["a"]["cost"] == Decimal("0.3") and by_model["a"]["requests"] == 2
    assert by_model["a"]["saved"] == Decimal("0.3") and by_model["a"]["counterfactual_cost"] == Decimal("0.6")
    assert by_model["b"]["cost"] == Decimal("0.0000001")
    assert [r["route"] for r in store.spend("route")][0] == "chat"
    assert store.savings_by_lever() == {"cache": Decimal("0.3")}
    assert store.spend("day")[0]["requests"] == 3
    with pytest.raises(ValueError, match="cannot group spend by"):
        store.spend("colour")


def test_savings_by_lever_sums_exactly_within_the_window(store: LedgerStore) -> None:
    old, new = record(saved={"cache": Decimal("0.1")}), record(saved={"cache": Decimal("0.000000000001")})
    old.ts -= 3600
    negative = record(saved={"route": Decimal("0.2"), "cascade": Decimal("-0.05")})
    store.write([old, new, negative, record(), record()])  # two rows that saved nothing
    assert store.savings_by_lever() == {
        "route": Decimal("0.2"), "cache": Decimal("0.100000000001"), "cascade": Decimal("-0.05")
    }
    assert store.savings_by_lever(since=new.ts - 60) == {
        "route": Decimal("0.2"), "cache": Decimal("0.000000000001"), "cascade": Decimal("-0.05")
    }


def test_a_large_batch_is_written_whole_and_a_repeated_id_replaces_its_row(store: LedgerStore) -> None:
    # More rows than one multi-row INSERT carries, with one request id written twice.
    rows = [record(cost=f"0.00{i % 10}") for i in range(700)]
    again = record(cost="0.5")
    again.request_id = rows[3].request_id
    store.write(rows)
    store.write([again])
    assert store.count() == 700
    total = store.execute("SELECT SUM(cost_pico) FROM requests")[0][0]
    expected = sum(Decimal(f"0.00{i % 10}") for i in range(700)) - Decimal("0.003") + Decimal("0.5")
    assert Decimal(total) / Decimal(10**12) == expected
    assert store.execute("SELECT cost_pico FROM requests WHERE request_id = ?", [again.request_id])[0][0] == 5 * 10**11


def test_writer_batches_and_flushes(tmp_path: Path) -> None:
    writer = LedgerWriter(
        SQLiteStore(str(tmp_path / "w.db")), flush_interval=0.01, spool_dir=tmp_path / "spool"
    )
    for _ in range(1000):
        writer.submit(record())
    assert writer.flush(5)
    assert writer.store.count() == 1000
    writer.close()


class FlakyStore(SQLiteStore):
    def __init__(self, path: str, fail: int) -> None:
        super().__init__(path)
        self.fail = fail

    def write(self, records):  # type: ignore[no-untyped-def]
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        super().write(records)


def test_a_failing_store_loses_nothing(tmp_path: Path) -> None:
    writer = LedgerWriter(
        FlakyStore(str(tmp_path / "f.db"), fail=2), flush_interval=0.01, spool_dir=tmp_path / "spool"
    )
    for _ in range(10):
        writer.submit(record())
    assert writer.flush(10)
    assert writer.store.count() == 10 and writer.failures == 2
    writer.close()


def test_rows_the_store_refuses_at_shutdown_are_spooled_and_replayed(tmp_path: Path) -> None:
    spill = tmp_path / "spool" / "spool.jsonl"
    writer = LedgerWriter(
        FlakyStore(str(tmp_path / "g.db"), fail=10**6), flush_interval=0.01, spool_dir=tmp_path / "spool"
    )
    r = record(saved={"cache": Decimal("0.5")})
    writer.submit(r)
    writer.close(timeout=0.3)
    assert spill.exists()
    again = LedgerWriter(SQLiteStore(str(tmp_path / "g.db")), spool_dir=tmp_path / "spool")
    assert not spill.exists()
    [row] = list(again.store.rows())
    assert row["request_id"] == r.request_id and row["saved_pico"] == 500_000_000_000
    again.close()


def test_open_store_urls(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(s, SQLiteStore) and s.path == f"{tmp_path}/x.db"[1:] or s.path.endswith("x.db")
    s.close()
    with pytest.raises(ValueError, match="unknown store"):
        open_store("mysql://x")


def test_prune_deletes_only_rows_older_than_the_cutoff_in_batches(store: LedgerStore) -> None:
    now = time.time()
    old = [record(cost="0.001") for _ in range(25)]
    for i, r in enumerate(old):
        r.ts = now - 100 * 86400 - i  # 100 days ago
    new = [record(cost="0.002") for _ in range(7)]
    store.write(old + new)
    store.record_outcome("old-task", True, None, None, now - 100 * 86400)
    store.record_outcome("new-task", True, None, None, now)
    batches: list[int] = []
    assert store.count_before(now - 90 * 86400) == 25
    assert store.prune(now - 90 * 86400, batch=10, progress=batches.append) == 25
    assert batches == [10, 10, 5]
    kept = {r["request_id"] for r in store.rows()}
    assert kept == {r.request_id for r in new}
    assert [t for (t,) in store.execute("SELECT task FROM task_outcomes ORDER BY task")] == ["new-task"]
    assert store.prune(now - 90 * 86400) == 0


def test_db_prune_command_says_what_it_deletes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from thrifty.ledger.cli import db

    path = tmp_path / "ledger.db"
    s = SQLiteStore(str(path))
    rows = [record() for _ in range(12)]
    for r in rows[:9]:
        r.ts -= 40 * 86400
    s.write(rows)
    s.close()
    url = f"sqlite:///{path}"
    dry = CliRunner().invoke(db, ["prune", "--store", url, "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "9 of 12 ledger rows are older than" in dry.output
    done = CliRunner().invoke(db, ["prune", "--store", url, "--older-than", "30d", "--yes"])
    assert done.exit_code == 0 and "deleted 9 rows" in done.output, done.output
    bad = CliRunner().invoke(db, ["prune", "--store", url, "--older-than", "soon"])
    assert bad.exit_code == 2 and "--older-than" in bad.output
    assert open_store(url).count() == 3
