"""The spool and the journal: a failing store loses nothing, and `kill -9` loses at most `durability_ms`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.ledger.test_store import FlakyStore, record
from thrifty.health import DEGRADED, READY
from thrifty.ledger.journal import decode, encode
from thrifty.ledger.spool import Spool, default_spool_dir
from thrifty.ledger.store import SQLiteStore
from thrifty.ledger.writer import LedgerWriter


def test_a_row_survives_the_journal_line_whole() -> None:
    r = record(saved={"cache": Decimal("0.25")}, tags={"route": "x"}, extra={"a": [1, "b"]})
    back = decode(encode(r))
    assert back == r


def test_rows_no_store_could_hold_are_still_journaled() -> None:
    r = record(task="t\udcff")
    r.input_tokens = 10**30
    back = decode(encode(r))
    assert back.input_tokens == 0 and back.extra["unstorable"]["input_tokens"] == str(10**30)
    assert back.task == "t\ufffd"


def test_the_spool_lives_beside_the_store_never_in_the_working_directory(tmp_path: Path) -> None:
    assert default_spool_dir(f"sqlite:///{tmp_path}/l.db") == tmp_path / "l.db.spool"
    pg = default_spool_dir("postgresql://app:s3cret@db.example:6543/money")
    assert pg.parent.name == "thrifty" and "db.example-6543" in pg.name and "s3cret" not in str(pg)
    assert not pg.is_relative_to(Path.cwd())
    # the same server and database under another password: the same spool
    assert default_spool_dir("postgresql://app:other@db.example:6543/money") == pg


def test_a_store_that_fails_sends_rows_to_the_spool_then_replays_them_while_running(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "f.db"), fail=3)
    writer = LedgerWriter(store, flush_interval=0.02, retry_max=0.1, spool_dir=tmp_path / "spool")
    rows = [record() for _ in range(50)]
    for r in rows:
        writer.submit(r)
    time.sleep(0.1)
    assert writer.spooled > 0, "the failed batch went to disk, not back to memory"
    assert writer.flush(5), "the spool was not replayed once the store answered"
    assert writer.health.state == READY and writer.health.changes == 2  # degraded once, ready once
    assert {r["request_id"] for r in store.rows()} == {r.request_id for r in rows}
    assert not (tmp_path / "spool" / "spool.jsonl").exists()
    writer.close()


def test_memory_is_bounded_while_the_store_hangs(tmp_path: Path) -> None:
    class HungStore(SQLiteStore):
        hang = True

        def write(self, records):  # type: ignore[no-untyped-def]
            while self.hang:
                time.sleep(0.01)
            super().write(records)

    store = HungStore(str(tmp_path / "h.db"))
    writer = LedgerWriter(store, flush_interval=0.01, batch_size=10, max_pending=30, spool_dir=tmp_path / "spool")
    for _ in range(200):
        writer.submit(record())
    time.sleep(0.3)
    assert len(writer._queue) + writer._in_flight <= 30
    assert writer.spool.rows >= 170 and writer.health.state == DEGRADED
    store.hang = False
    assert writer.flush(10)
    assert store.count() == 200
    writer.close()


def test_a_torn_spool_line_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.jsonl")
    good = record()
    spool.append([encode(good)])
    with (tmp_path / "s.jsonl").open("ab") as f:
        f.write(b'{"request_id": "cut-by-a-cra')
    again = Spool(tmp_path / "s.jsonl")
    again.append([encode(record())])
    records, offset = again.read(10)
    assert [r.request_id for r in records][0] == good.request_id and len(records) == 2


_CHILD = textwrap.dedent("""
    import sys, time, json
    from tests.ledger.test_store import record
    from thrifty.ledger.store import SQLiteStore
    from thrifty.ledger.writer import LedgerWriter

    db, spool, durability, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    # a long flush interval: without the journal, every row since the last batch would die with us
    writer = LedgerWriter(SQLiteStore(db), spool_dir=spool, flush_interval=5.0, durability_ms=durability)
    start = time.monotonic()
    i = 0
    while True:
        r = record()
        writer.submit(r)
        print(json.dumps([r.request_id, time.monotonic() - start]), flush=True)
        i += 1
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
""")


@pytest.mark.parametrize("durability_ms", [0, 20])
def test_kill_9_loses_at_most_the_rows_of_the_last_durability_ms(tmp_path: Path, durability_ms: int) -> None:
    db, spool = tmp_path / "k.db", tmp_path / "spool"
    rate = 500.0
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(db), str(spool), str(durability_ms), str(rate)],
                            stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    submitted: list[tuple[str, float]] = []
    first = proc.stdout.readline()  # the child has started (imports take a while on a busy machine)
    submitted.append(tuple(json.loads(first)))  # type: ignore[arg-type]
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        submitted.append(tuple(json.loads(line)))  # type: ignore[arg-type]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(submitted) > 100
    # restart: the journal left behind is replayed
    writer = LedgerWriter(SQLiteStore(str(db)), spool_dir=spool)
    assert writer.flush(10)
    have = {r["request_id"] for r in writer.store.rows()}
    writer.close()
    lost = [(rid, t) for rid, t in submitted if rid not in have]
    last = submitted[-1][1]
    # rows submitted more than durability_ms (+ scheduling slack on a shared machine) before the kill
    slack = 0.05
    old_lost = [t for _, t in lost if t < last - durability_ms / 1000 - slack]
    assert not old_lost, f"{len(old_lost)} rows older than the durability bound were lost"
    assert len(lost) <= rate * (durability_ms / 1000 + slack) + 1


def test_without_a_journal_rows_still_reach_the_store_and_no_journal_is_written(tmp_path: Path) -> None:
    writer = LedgerWriter(SQLiteStore(str(tmp_path / "n.db")), flush_interval=0.01, durability_ms=None,
                          spool_dir=tmp_path / "spool")
    for _ in range(20):
        writer.submit(record())
    assert writer.flush(5) and writer.store.count() == 20
    assert writer.journal.segments() == []
    writer.close()


def test_the_spill_file_of_an_older_version_is_replayed_once(tmp_path: Path) -> None:
    old = tmp_path / "l.db.spill.jsonl"
    r = record(saved={"cache": Decimal("0.5")})
    old.write_bytes(encode(r))  # the old writer wrote asdict(record) with Decimals as text: the same line
    writer = LedgerWriter(SQLiteStore(str(tmp_path / "l.db")), spool_dir=tmp_path / "spool", adopt=(old,))
    assert not old.exists()
    [row] = list(writer.store.rows())
    assert row["request_id"] == r.request_id and row["saved_pico"] == 500_000_000_000
    writer.close()
