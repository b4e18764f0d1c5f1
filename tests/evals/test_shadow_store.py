"""The shadow tables live in the ledger's store: a SQLite file, or PostgreSQL shared by replicas."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest

from thrifty.evals.shadow import ShadowStore, shadow_location

PG = "postgresql://postgres@127.0.0.1:5432/test"


def result(route: str, lever: str, delta: float, ts: float) -> tuple[object, ...]:
    return (ts, uuid.uuid4().hex, route, lever, "lever_off", "ref", "m", "graded", 0.9, delta, "{}", 0.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shadow.db")
    return PG


def test_results_and_the_disabled_set_round_trip(where: str) -> None:
    route = f"r-{uuid.uuid4().hex[:8]}"  # the PostgreSQL tables are shared: this test's own route
    a, b = ShadowStore(where), ShadowStore(where)  # two replicas
    try:
        now = time.time()
        a.add([result(route, "cache", -0.1 * i, now + i) for i in range(5)])
        assert b.recent(3)[(route, "cache")] == pytest.approx([-0.2, -0.3, -0.4])
        a.set_disabled(route, "cache", {"ts": now, "mean_delta": -0.3, "samples": 5, "tolerance": 0.05})
        a.set_disabled(route, "cache", {"ts": now + 1, "mean_delta": -0.4, "samples": 6, "tolerance": 0.05})
        seen = b.disabled()[(route, "cache")]
        assert seen["samples"] == 6 and seen["ts"] == pytest.approx(now + 1, abs=1e-3)  # 8-byte times on both
        b.set_disabled(route, "cache", None)
        assert (route, "cache") not in a.disabled()
    finally:
        a.close()
        b.close()
        if where == PG:
            with psycopg.connect(PG) as conn:
                conn.execute("DELETE FROM shadow_results WHERE route = %s", (route,))


def test_by_default_the_shadow_tables_follow_the_ledger_store() -> None:
    assert shadow_location(None, "postgresql://db/ledger") == "postgresql://db/ledger"
    assert shadow_location(None, "sqlite:///data/thrifty.db") == "data/thrifty.db"
    assert shadow_location(None, "sqlite://:memory:") == "thrifty-shadow.db"
    assert shadow_location("elsewhere.db", "postgresql://db/ledger") == "elsewhere.db"
