"""Budgets and rate limits in one process: reserved before the call, settled however it ends."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import RunningGateway, StartGateway, serving
from tests.spend.helpers import ADMIN_HEADERS, chat, clear_of_window_edge, create_key, start
from thrifty.testing.mock_upstream import MockUpstream


async def budgets(gw: RunningGateway) -> list[dict[str, Any]]:
    spend = gw.gateway.services.spend
    assert spend is not None
    await spend.drain()
    async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/v1/thrifty/budgets", headers=ADMIN_HEADERS) as r:
        return list((await r.json())["data"])


def ledger_cost(gw: RunningGateway, key: str) -> Decimal:
    return sum((Decimal(str(r["cost_usd"])) for r in gw.rows() if r["key_name"] == key), Decimal(0))


async def test_a_budget_refuses_before_the_call_and_says_which(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="tight", budgets=[{"usd": "0.00003", "window": "day"}])
    statuses = []
    for i in range(12):
        status, body, headers = await chat(gw, made["key"], f"question number {i} please", max_tokens=10)
        statuses.append(status)
        if status == 429:
            break
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
    assert statuses[-1] == 429 and statuses.count(200) >= 2
    message = body["error"]["message"]
    assert f"key:{made['id']}" in message and "calendar day" in message and "resets at" in message
    assert body["error"]["code"] == "budget_exceeded" and int(headers["Retry-After"]) >= 1
    calls = upstream.calls["openai"]
    assert calls == statuses.count(200)  # the refused request never reached the provider
    spent = ledger_cost(gw, "tight")
    assert spent <= Decimal("0.00003")
    [row] = await budgets(gw)
    assert row["reserved"] == 0 and abs(Decimal(str(row["used"])) - spent) < Decimal("1e-8")


async def test_failed_and_cut_requests_settle_to_what_they_cost(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="unlucky", budgets=[{"usd": 1, "window": "1h"}], limits={"tpm": 100000})
    assert (await chat(gw, made["key"], "fail [500 always]", max_tokens=50))[0] >= 500
    [money, tokens] = await budgets(gw)
    assert money["used"] == 0 and money["reserved"] == 0 and tokens["used"] == 0
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "a b c d e f g h [cut]"}],
            "stream": True, "max_tokens": 50}
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/chat/completions", json=body,
                                                   headers={"Authorization": f"Bearer {made['key']}"}) as r:
        await r.read()
    [money, tokens] = await budgets(gw)
    assert money["reserved"] == 0 and money["used"] > 0
    assert abs(Decimal(str(money["used"])) - ledger_cost(gw, "unlucky")) < Decimal("1e-8")
    assert tokens["used"] == sum(r["input_tokens"] + r["output_tokens"] for r in gw.rows())


async def test_client_gone_settles_the_reservation(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="impatient", budgets=[{"usd": 1, "window": "day"}], limits={"concurrency": 1})
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "wait [slow 1500]"}], "max_tokens": 20}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as s:
        try:
            async with s.post(f"{gw.url}/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {made['key']}"}) as r:
                await r.read()
        except TimeoutError:
            pass
    await asyncio.sleep(1.6)
    rows = await budgets(gw)
    assert all(r["reserved"] == 0 for r in rows)
    assert [r["used"] for r in rows if r["what"] == "concurrency"] == [0]
    assert (await chat(gw, made["key"]))[0] == 200


async def test_rate_limits_answer_429_with_retry_after(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="chatty", limits={"rpm": 3})
    await clear_of_window_edge()
    results = [await chat(gw, made["key"], f"n {i}") for i in range(4)]
    assert [r[0] for r in results] == [200, 200, 200, 429]
    assert 1 <= int(results[-1][2]["Retry-After"]) <= 60 and "3 requests per minute" in results[-1][1]["error"]["message"]
    slow = await create_key(gw, name="parallel", limits={"concurrency": 2})
    answers = await asyncio.gather(*(chat(gw, slow["key"], f"[slow 400] q{i}") for i in range(3)))
    assert sorted(a[0] for a in answers) == [200, 200, 429]


async def test_team_budget_is_shared_and_tag_budgets_apply_to_tagged_requests(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path, spend="""
  tags:
    "feature=costly": [{usd: 0.00001, window: month}]
""")
    async with aiohttp.ClientSession() as s, s.put(f"{gw.url}/v1/thrifty/teams/search", headers=ADMIN_HEADERS,
                                                  json={"budgets": [{"usd": "0.00002", "window": "day"}]}) as r:
        assert r.status == 200
    a = await create_key(gw, name="ann", team="search")
    b = await create_key(gw, name="ben", team="search")
    used = []
    for i in range(12):
        status, body, _ = await chat(gw, (a if i % 2 else b)["key"], f"shared {i}", max_tokens=5)
        used.append(status)
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
        if status == 429:
            break
    assert used[-1] == 429 and "team:search" in body["error"]["message"]
    assert ledger_cost(gw, "ann") + ledger_cost(gw, "ben") <= Decimal("0.00002")
    c = await create_key(gw, name="cat", tags={"feature": "costly"})
    statuses = []
    for i in range(8):
        statuses.append((await chat(gw, c["key"], f"tagged {i}", max_tokens=5))[0])
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
    assert 429 in statuses and statuses[0] == 200


async def test_counters_survive_a_restart_through_the_ledger(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="durable", budgets=[{"usd": 1, "window": "day"}, {"usd": 1, "window": "2h"}])
    for i in range(3):
        assert (await chat(gw, made["key"], f"spend {i}"))[0] == 200
    before = await budgets(gw)
    await gw.runner.cleanup()
    again = await start(start_gateway, upstream, tmp_path)
    after = await budgets(again)
    assert [r["used"] for r in after] == [r["used"] for r in before] and before[0]["used"] > 0


async def test_no_max_tokens_reserves_from_the_ledger_not_the_model_limit(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    # The model's output limit (10M tokens at $0.60/M = $6) is more than the whole budget.
    gw = await start(start_gateway, upstream, tmp_path, spend="""
  output_limits: {gpt-test: 10000000}
  min_samples: 5
""")
    made = await create_key(gw, name="agent", budgets=[{"usd": 5, "window": "month"}])
    first, body, _ = await chat(gw, made["key"])
    assert first == 429 and "model limit" in body["error"]["message"]
    for i in range(5):  # history of the key, with max_tokens
        assert (await chat(gw, made["key"], f"short answer {i}", max_tokens=20))[0] == 200
    spend = gw.gateway.services.spend
    assert spend is not None
    gw.rows()  # the ledger has written the history
    spend.estimator._cache.clear()
    status, body, _ = await chat(gw, made["key"], "now without a cap")
    assert status == 200, body


async def test_alerts_fire_once_per_threshold_with_a_retry(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    received: list[dict[str, Any]] = []
    attempts = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        attempts["n"] += 1
        if attempts["n"] == 1:
            return web.Response(status=503)
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as port:
        gw = await start(start_gateway, upstream, tmp_path, spend=f"""
  alerts: {{webhook: "http://127.0.0.1:{port}/hook", retry_backoff: 0.01, thresholds: [0.5, 0.8]}}
""")
        made = await create_key(gw, name="watched", budgets=[{"usd": "0.00002", "window": "day"}])
        for i in range(8):
            await chat(gw, made["key"], f"alert me {i}", max_tokens=5)
            await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
        await asyncio.sleep(0.3)
        assert gw.gateway.services.spend is not None and gw.gateway.services.spend.alerts is not None
        await gw.gateway.services.spend.alerts.aclose()
    assert sorted(r["threshold"] for r in received) == [0.5, 0.8]
    async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/v1/thrifty/alerts", headers=ADMIN_HEADERS) as r:
        rows = (await r.json())["data"]
    assert len(rows) == 2 and all(r["delivered_at"] for r in rows)
    assert sorted(r["attempts"] for r in rows) == [1, 2]


async def test_the_dashboard_shows_budgets_with_its_cookie(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    from tests.spend.helpers import ADMIN

    gw = await start(start_gateway, upstream, tmp_path)
    await create_key(gw, name="shown", budgets=[{"usd": 2, "window": "week"}], limits={"concurrency": 3})
    async with aiohttp.ClientSession(cookies={"thrifty_key": ADMIN}) as s:
        async with s.get(f"{gw.url}/dashboard") as r:
            assert r.status == 200 and 'id="t-budgets"' in await r.text()
        async with s.get(f"{gw.url}/dashboard/static/dashboard.js") as r:
            assert "/v1/thrifty/budgets" in await r.text()
        async with s.get(f"{gw.url}/v1/thrifty/budgets") as r:
            rows = (await r.json())["data"]
    assert [(r["key"], r["what"], r["limit"]) for r in rows] == [("shown", "budget", 2.0), ("shown", "concurrency", 3)]
    assert rows[0]["window"] == "calendar week (UTC)" and rows[0]["resets_at"] > 0
