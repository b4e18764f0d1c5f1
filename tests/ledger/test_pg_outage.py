"""A PostgreSQL ledger that goes away and comes back, on a private server (never the shared one)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ledger.test_store import record
from thrifty.health import DEGRADED, READY
from thrifty.ledger.store import PostgresStore
from thrifty.ledger.writer import LedgerWriter
from thrifty.testing.services import PrivatePostgres

pytestmark = pytest.mark.skipif(not PrivatePostgres.available(), reason="needs PostgreSQL binaries (initdb, pg_ctl)")


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    yield server
    server.close()


def test_the_writer_reconnects_and_replays_the_spool_without_a_restart(pg: PrivatePostgres, tmp_path: Path) -> None:
    store = PostgresStore(pg.url)
    store.execute("DELETE FROM requests")
    writer = LedgerWriter(store, flush_interval=0.05, retry_max=0.5, spool_dir=tmp_path / "spool")
    ids: list[str] = []
    stop = threading.Event()

    def load() -> None:  # 200 rows/s all along, outage included
        while not stop.is_set():
            r = record()
            writer.submit(r)
            ids.append(r.request_id)
            time.sleep(0.005)

    feeder = threading.Thread(target=load)
    feeder.start()
    try:
        time.sleep(0.5)
        pg.stop()
        time.sleep(1.5)
        assert writer.health.state == DEGRADED
        assert writer.spool.rows > 0
        pg.start()
        back = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        feeder.join()
    assert writer.flush(10), f"{writer.pending} rows still pending 10 s after PostgreSQL came back"
    assert time.monotonic() - back < 10
    assert writer.health.state == READY
    assert store.connects >= 2
    have = {row[0] for row in store.execute("SELECT request_id FROM requests")}
    assert have == set(ids)
    writer.close()
