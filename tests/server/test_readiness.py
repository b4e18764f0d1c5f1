"""`/readyz` tells the truth while the ledger's PostgreSQL and the cache's Redis go away and come back.

Both servers are private (started by the test on free ports), never the shared ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream
from thrifty.testing.services import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.skipif(not (PrivatePostgres.available() and PrivateRedis.available()),
                                reason="needs PostgreSQL binaries and redis-server")


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    yield server
    server.close()


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.close()


async def _ready(http: httpx.AsyncClient, gw: RunningGateway) -> tuple[int, dict[str, Any]]:
    r = await http.get(gw.url + "/readyz")
    return r.status_code, r.json()


ASK = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


async def test_readyz_follows_the_ledger_store_and_redis(
    pg: PrivatePostgres, redis_server: PrivateRedis, upstream: MockUpstream, tmp_path: Path,
    start_gateway: StartGateway,
) -> None:
    config = mock_config(upstream, tmp_path, f"""
cache: {{store: '{redis_server.url}', redis_budget_ms: 500}}
dedup: {{redis: '{redis_server.url}', redis_budget_ms: 500}}
""").replace(f"store: sqlite:///{tmp_path}/ledger.db", f"store: {pg.url}").replace(
        "ledger: {flush_interval: 0.05}", f"ledger: {{flush_interval: 0.05, retry_max: 0.5, spool_dir: '{tmp_path}/spool'}}")
    gw = await start_gateway(config)
    assert gw.gateway.ledger is not None
    gw.gateway.ledger.store.execute("DELETE FROM requests")
    ids: list[str] = []

    async def ask(http: httpx.AsyncClient, i: int) -> None:
        r = await http.post(gw.url + "/v1/chat/completions", json={**ASK, "messages": [{"role": "user", "content": f"q{i}"}]})
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-thrifty-request-id"])

    async with httpx.AsyncClient() as http:
        status, body = await _ready(http, gw)
        assert (status, body["status"]) == (200, "ready"), body
        assert set(body["dependencies"]) >= {"ledger", "upstream:gpt-test"}
        assert any(k.startswith("redis:") for k in body["dependencies"])

        # PostgreSQL goes away: requests still answer, /readyz says degraded, rows go to the spool
        await asyncio.to_thread(pg.stop)
        for i in range(20):
            await ask(http, i)
        await asyncio.sleep(0.3)
        status, body = await _ready(http, gw)
        assert (status, body["status"], body["dependencies"]["ledger"]["state"]) == (200, "degraded", "degraded"), body
        assert body["dependencies"]["ledger"]["spool_rows"] > 0
        await asyncio.to_thread(pg.start)
        back = time.monotonic()
        while time.monotonic() - back < 10:
            status, body = await _ready(http, gw)
            if body["status"] == "ready":
                break
            await asyncio.sleep(0.2)
        assert body["status"] == "ready", body
        have = {r[0] for r in gw.gateway.ledger.store.execute("SELECT request_id FROM requests")}
        assert set(ids) <= have

        # Redis goes away: requests go on without the cache, /readyz says degraded, not down
        redis_server.stop()
        for i in range(20, 30):
            await ask(http, i)
        status, body = await _ready(http, gw)
        redis_state = [d["state"] for k, d in body["dependencies"].items() if k.startswith("redis:")]
        assert (status, body["status"]) == (200, "degraded") and "degraded" in redis_state, body
        metrics = (await http.get(gw.url + "/metrics")).text
        assert 'thrifty_dependency_state{dependency="ledger"} 0' in metrics
        assert "thrifty_ready 1" in metrics


async def test_readyz_says_down_when_every_upstream_breaker_is_open(thrifty: RunningGateway) -> None:
    dispatcher = thrifty.gateway.dispatcher
    async with httpx.AsyncClient() as http:
        for breaker in dispatcher.breakers.values():
            for _ in range(breaker.threshold):
                breaker.failure()
        status, body = await _ready(http, thrifty)
        assert (status, body["status"]) == (503, "down")
        assert body["dependencies"]["upstream:gpt-test"]["state"] == "down"
        dispatcher.breakers["gpt-test"].success()
        status, body = await _ready(http, thrifty)
        assert (status, body["status"]) == (200, "degraded")


async def test_with_keys_only_an_admin_sees_the_details(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_TEAM", "team-key-123")
    monkeypatch.setenv("T_ADMIN", "admin-key-456")
    gw = await start_gateway(mock_config(upstream, tmp_path, """
server:
  keys:
    - {name: team, key_env: T_TEAM}
    - {name: admin, key_env: T_ADMIN, admin: true}
"""))
    async with httpx.AsyncClient() as http:
        anyone = await http.get(gw.url + "/readyz")
        team = await http.get(gw.url + "/readyz", headers={"Authorization": "Bearer team-key-123"})
        admin = await http.get(gw.url + "/readyz", headers={"Authorization": "Bearer admin-key-456"})
    assert anyone.status_code == team.status_code == admin.status_code == 200
    assert anyone.json() == team.json() == {"status": "ready"}
    assert "ledger" in admin.json()["dependencies"]
