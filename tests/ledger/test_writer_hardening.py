"""The ledger writer under stress: `flush` means written, and no row can wedge the queue."""

from __future__ import annotations

import time
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from tests.ledger.test_store import record
from thrifty.ledger.store import SQLiteStore
from thrifty.ledger.writer import LedgerWriter


class SlowDeque(deque[Any]):
    """A queue whose `popleft` lets other threads run just after a row has left it, the
    moment at which a row was once counted neither queued nor in flight."""

    def popleft(self) -> Any:
        item = super().popleft()
        time.sleep(0.05)
        return item


def test_flush_returns_only_once_every_row_is_written(tmp_path: Path) -> None:
    writer = LedgerWriter(SQLiteStore(str(tmp_path / "w.db")), flush_interval=0.01, durability_ms=0,
                          spool_dir=tmp_path / "spool")
    writer._queue = SlowDeque()
    for _ in range(3):
        writer.submit(record())
    time.sleep(0.03)  # the writer thread is now inside popleft
    assert writer.flush(5)
    assert writer.store.count() == 3
    writer.close()


def test_a_row_with_unstorable_numbers_is_written_and_does_not_block_the_others(tmp_path: Path) -> None:
    writer = LedgerWriter(SQLiteStore(str(tmp_path / "w.db")), flush_interval=0.01, spool_dir=tmp_path / "spool")
    bad = record(cost="1e40", saved={"cache": Decimal("NaN")})
    bad.input_tokens = 10**30
    good = record()
    writer.submit(bad)
    writer.submit(good)
    assert writer.flush(3), "the writer is stuck retrying a row the store cannot hold"
    rows = {r["request_id"]: r for r in writer.store.rows()}
    assert rows[good.request_id]["cost_pico"] == 1_000_000_000
    kept = rows[bad.request_id]
    assert (kept["input_tokens"], kept["cost_pico"], kept["saved_pico"]) == (0, 0, 0)
    assert orjson.loads(kept["extra"])["unstorable"]["input_tokens"] == str(10**30)
    assert writer.failures == 0
    writer.close()


def test_an_unstorable_row_still_queued_at_shutdown_is_spooled(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "w.db"))
    writer = LedgerWriter(store, flush_interval=60, durability_ms=0, spool_dir=tmp_path / "spool")
    writer._stop = True  # the store thread exits on its next wake, leaving the queue to `close`
    writer._wake.set()
    writer._thread.join(2)
    bad = record()
    bad.output_tokens = 10**25
    writer.submit(bad)
    writer.close(timeout=0.2)
    again = LedgerWriter(SQLiteStore(str(tmp_path / "w.db")), spool_dir=tmp_path / "spool")
    [row] = list(again.store.rows())
    assert row["request_id"] == bad.request_id and row["output_tokens"] == 0
    again.close()


def test_text_no_store_can_encode_is_written_with_replacement_characters(tmp_path: Path) -> None:
    writer = LedgerWriter(SQLiteStore(str(tmp_path / "w.db")), flush_interval=0.01, spool_dir=tmp_path / "spool")
    bad = record(task="t\udcff", tags={"k": "v\ud800"}, extra={"note": ["\udce9"]})
    good = record()
    writer.submit(bad)
    writer.submit(good)
    assert writer.flush(3), "the writer is stuck retrying text the store cannot encode"
    rows = {r["request_id"]: r for r in writer.store.rows()}
    assert rows[bad.request_id]["task"] == "t\ufffd"
    assert orjson.loads(rows[bad.request_id]["extra"]) == {"note": ["\ufffd"]}
    assert good.request_id in rows
    writer.close()
