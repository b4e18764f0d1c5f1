"""Counters in Redis: shared by replicas, kept across restarts, and a safe fallback in an outage.

Sharing uses the machine's Redis with a unique key prefix per test; the outage drill starts a
private redis-server on a free port and stops it (never the shared one)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartGateway, free_port
from tests.spend.helpers import chat, clear_of_window_edge, create_key, start
from tests.spend.test_budgets import budgets, ledger_cost
from thrifty.testing.mock_upstream import MockUpstream

SHARED = "redis://127.0.0.1:6379/0"


def _redis_up(url: str) -> bool:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
        return True
    except Exception:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(SHARED), reason="no Redis on 127.0.0.1:6379")


def spend_redis(url: str, prefix: str) -> str:
    return f"""
  redis: {url}
  redis_prefix: "{prefix}"
  redis_timeout: 0.2
"""


@pytest.fixture
def prefix() -> Iterator[str]:
    import redis

    p = f"test:spend:{uuid.uuid4().hex[:12]}:"
    yield p
    client = redis.Redis.from_url(SHARED)
    for name in client.scan_iter(match=f"{p}*"):
        client.delete(name)


@needs_redis
async def test_two_replicas_share_one_budget(prefix: str, upstream: MockUpstream, tmp_path: Path,
                                             start_gateway: StartGateway) -> None:
    one = await start(start_gateway, upstream, tmp_path, spend_redis(SHARED, prefix))
    two = await start(start_gateway, upstream, tmp_path, spend_redis(SHARED, prefix))
    made = await create_key(one, name="shared", budgets=[{"usd": "0.0001", "window": "day"}])
    await asyncio.sleep(0.5)
    answers = await asyncio.gather(*(chat(one if i % 2 else two, made["key"], f"q {i} " + "w " * (i % 7), max_tokens=12)
                                     for i in range(60)))
    for gw in (one, two):
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
    assert {a[0] for a in answers} == {200, 429}
    two.rows()  # both replicas write one ledger: flush the other one's writer too
    assert ledger_cost(one, "shared") <= Decimal("0.0001")
    [row] = await budgets(two)
    assert row["reserved"] == 0 and abs(Decimal(str(row["used"])) - ledger_cost(one, "shared")) < Decimal("1e-8")


@needs_redis
async def test_a_restarted_replica_keeps_the_counters(prefix: str, upstream: MockUpstream, tmp_path: Path,
                                                      start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path, spend_redis(SHARED, prefix))
    made = await create_key(gw, name="kept", budgets=[{"usd": 1, "window": "month"}], limits={"rpm": 5})
    await clear_of_window_edge(margin=10)
    for i in range(3):
        assert (await chat(gw, made["key"], f"r {i}"))[0] == 200
    before = await budgets(gw)
    await gw.runner.cleanup()
    again = await start(start_gateway, upstream, tmp_path, spend_redis(SHARED, prefix))
    assert await budgets(again) == before
    statuses = [(await chat(again, made["key"], f"more {i}"))[0] for i in range(3)]
    assert statuses == [200, 200, 429]  # the minute's count went on: 3 + 2 = 5


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
async def test_redis_outage_enforces_a_share_locally_and_reconciles(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(50):
            if _redis_up(url):
                break
            await asyncio.sleep(0.1)
        gw = await start(start_gateway, upstream, tmp_path, spend_redis(url, "outage:"))
        made = await create_key(gw, name="steady", budgets=[{"usd": "0.0001", "window": "day"}])
        for i in range(3):
            assert (await chat(gw, made["key"], f"before {i}", max_tokens=8))[0] == 200
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
        spent_before = ledger_cost(gw, "steady")
        server.terminate()
        server.wait(5)
        statuses = []
        for i in range(40):
            statuses.append((await chat(gw, made["key"], f"during {i}", max_tokens=8))[0])
            await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
            ready = await r.json()
        assert r.status == 200 and ready["status"] == "degraded"  # the details are for admin keys
        assert "redis" in (gw.gateway.services.spend.degraded or "")  # type: ignore[union-attr]
        assert statuses[0] == 200 and 429 in statuses
        during = ledger_cost(gw, "steady") - spent_before
        room = Decimal("0.0001") - spent_before
        assert during <= room / 2 + Decimal("0.00001")  # outage_share 0.5 of the room left
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # an empty Redis
        for _ in range(50):
            if _redis_up(url):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
            assert (await r.json())["status"] == "ready"
        import redis

        raw = redis.Redis.from_url(url)
        counted = sum(int(raw.get(k) or 0) for k in raw.scan_iter("outage:key:*:b:*") if not k.endswith(b":r"))
        assert counted == int(during * 10**9) or abs(counted - during * 10**9) <= 40  # reconciled (ns rounding)
    finally:
        server.terminate()
        server.wait(5)
