"""The observability surface on a real server: /metrics, the stats API, feedback, /dashboard.

Traffic is written through the real ledger writer (as the server does after each request),
so the metrics listener, the SQLite store and the stats queries all run for real. The
dashboard is opened in headless Chromium: it must load, draw every chart with data and log
no console errors; a screenshot is kept in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.ledger.record import LedgerRecord
from thrifty.server.app import create_app
from thrifty.testing.mock_upstream import MockUpstream

ADMIN, USER = "sk-admin-test", "sk-user-test"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = parse_config(f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
dashboard: {{refresh_s: 2, stats_cache_s: 0}}
server:
  keys:
    - {{name: ops, sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}, admin: true}}
    - {{name: app, sha256: {hashlib.sha256(USER.encode()).hexdigest()}}}
""")
    gateway = Gateway(config)
    runner = web.AppRunner(create_app(gateway))
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Server(gateway, port)
    await runner.cleanup()


def traffic(now: float) -> list[LedgerRecord]:
    """Two hours of mixed traffic: two models, levers that saved, a reroute, errors, tasks."""
    out = []
    for i in range(60):
        ts = now - 7200 + i * 120
        cached = i % 4 == 0
        error = i % 15 == 7
        rerouted = i % 5 == 1
        savings = {"cache": Decimal("0.002")} if cached else ({"route": Decimal("0.0015")} if rerouted else {})
        out.append(
            LedgerRecord(
                request_id=f"r{i}", ts=ts, protocol="openai", requested_model="gpt-big",
                served_model="gpt-small" if rerouted else ("gpt-big" if i % 3 else "claude-mid"),
                provider="openai", status=502 if error else 200, outcome="error" if error else "ok",
                key_name="app" if i % 2 else "batch", route="chat" if i % 3 else "search",
                feature="summary" if i % 2 else "qa", task=f"t{i // 6}",
                error="upstream timed out" if error else None, cache="hit" if cached else "miss",
                answered_by="cache" if cached else None,
                input_tokens=0 if cached else 400 + i, output_tokens=0 if cached else 50 + i,
                cost=Decimal(0) if cached or error else Decimal("0.001") + Decimal(i) / 100000,
                counterfactual_cost=(Decimal("0.002") if cached else Decimal(0))
                + (Decimal("0.0015") if rerouted else Decimal(0))
                + (Decimal(0) if cached or error else Decimal("0.001") + Decimal(i) / 100000),
                savings=savings, tokens_saved={"cache": 450} if cached else {},
                latency_ms=3.0 if cached else 200.0 + 10 * i, ttfb_ms=None,
                extra={"escalations": [{"model": "cheap", "reason": "score 0.2 < 0.6", "cost": "0.0001"}]} if i % 10 == 3 else {},
            )
        )  # fmt: skip
    return out


async def _get(url: str, key: str | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.text(), dict(r.headers)


async def _post(url: str, body: Any, key: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_count_what_the_ledger_records(server: Server) -> None:
    records = traffic(time.time())
    assert server.gateway.ledger is not None
    for r in records:
        server.gateway.ledger.submit(r)
    status, _, _ = await _get(server.url + "/metrics")
    assert status == 401
    status, _, _ = await _get(server.url + "/metrics", USER)
    assert status == 403
    status, text, headers = await _get(server.url + "/metrics", ADMIN)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert _metric(text, "thrifty_requests_total") == len(records)
    assert _metric(text, "thrifty_requests_total", outcome="error") == sum(r.outcome == "error" for r in records)
    assert _metric(text, "thrifty_cost_usd_total") == pytest.approx(float(sum(r.cost for r in records)))
    assert _metric(text, "thrifty_saved_usd_total", lever="cache") == pytest.approx(0.002 * 15)
    assert _metric(text, "thrifty_cache_requests_total", result="hit") == 15
    assert _metric(text, "thrifty_tokens_total", kind="output") == sum(r.output_tokens for r in records)
    assert _metric(text, "thrifty_rerouted_total", requested="gpt-big", served="gpt-small") == 12
    # the histogram is cumulative and ends with every request
    assert _metric(text, "thrifty_request_duration_seconds_bucket", le="+Inf") == len(records)
    assert _metric(text, "thrifty_request_duration_seconds_bucket", le="0.005") == 15
    for route in {r.route for r in records}:
        counts = [float(v) for v in re.findall(
            rf'^thrifty_request_duration_seconds_bucket{{route="{route}",le="[^"]+"}} (\S+)$', text, re.M)]
        assert counts == sorted(counts) and counts[-1] == sum(r.route == route for r in records)
    assert re.search(r"^thrifty_ledger_written_total \d+$", text, re.M)
    for line in text.splitlines():  # every sample line is `name{labels} value`
        assert line.startswith("#") or re.match(r"^[a-z_]+(\{[^}]*\})? [-+0-9.eInf]+$", line), line


async def test_stats_and_cost_per_successful_task(server: Server) -> None:
    records = traffic(time.time())
    assert server.gateway.ledger is not None
    for r in records:
        server.gateway.ledger.submit(r)
    # Tasks t0..t9 have 6 requests each; t0 and t1 succeeded, t2 failed.
    for task, ok in (("t0", True), ("t1", True), ("t2", False)):
        status, body = await _post(server.url + "/v1/thrifty/feedback", {"task": task, "success": ok, "score": 0.5}, USER)
        assert status == 200, body
    status, body = await _post(server.url + "/v1/thrifty/feedback", {"task": "t3", "success": "yes"}, USER)
    assert status == 400 and body["error"]["param"] == "success"
    status, body = await _post(server.url + "/v1/thrifty/feedback", {"task": "t3", "success": True}, None)
    assert status == 401

    status, text, _ = await _get(server.url + "/v1/thrifty/stats?since=3h", USER)
    assert status == 403
    status, text, _ = await _get(server.url + "/v1/thrifty/stats?since=3h", ADMIN)
    assert status == 200
    import orjson

    stats = orjson.loads(text)
    assert stats["totals"]["requests"] == 60
    assert stats["totals"]["cost"] == pytest.approx(float(sum(r.cost for r in records)))
    assert stats["savings_by_lever"]["cache"] == pytest.approx(0.03)
    assert stats["savings_by_lever"]["route"] == pytest.approx(0.0015 * sum(1 for i in range(60) if i % 5 == 1 and i % 4))
    assert stats["cache"]["hit_rate"] == pytest.approx(15 / 60)
    assert stats["routing"]["rerouted"] == sum(r.served_model != r.requested_model for r in records)
    assert stats["routing"]["escalated"] == 6
    assert stats["errors"]["by_status"] == [{"status": 502, "requests": 4}]
    assert sum(p["requests"] for p in stats["series"]) == 60
    spent = sum(float(r.cost) for r in records if r.task in ("t0", "t1", "t2"))
    assert stats["tasks"]["successful"] == 2 and stats["tasks"]["with_outcome"] == 3
    assert stats["tasks"]["cost_per_successful_task"] == pytest.approx(spent / 2)
    assert stats["latency_ms"]["p50"] is not None and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]
    # a narrower window sees fewer rows
    status, text, _ = await _get(server.url + "/v1/thrifty/stats?since=30m", ADMIN)
    assert 0 < orjson.loads(text)["totals"]["requests"] < 60
    status, text, _ = await _get(server.url + "/v1/thrifty/stats?since=yesterdayish", ADMIN)
    assert status == 400


async def test_dashboard_needs_an_admin_key(server: Server) -> None:
    status, _, _ = await _get(server.url + "/dashboard")
    assert status == 401
    status, _, _ = await _get(server.url + "/dashboard", USER)
    assert status == 403
    status, html, _ = await _get(server.url + "/dashboard", ADMIN)
    assert status == 200 and "/dashboard/static/chart.umd.js" in html and "cdn" not in html.lower()
    status, js, _ = await _get(server.url + "/dashboard/static/chart.umd.js")
    assert status == 200 and "Chart.js v4" in js[:200]
    status, _, _ = await _get(server.url + "/dashboard/static/..%2Fdashboard.py")
    assert status == 404


def _browse(url: str, shot: Path) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1700"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(url)
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        charts = driver.execute_script(
            """return Object.fromEntries(Object.entries(window.__charts).map(([id, c]) => [id, {
                 drawn: c.canvas.width > 0 && c.canvas.height > 0,
                 points: c.data.datasets.reduce((n, ds) => n + ds.data.filter((v) => v != null && v !== 0).length, 0)}]))"""
        )
        requests = driver.execute_script("return document.body.dataset.requests")
        error_hidden = driver.execute_script("return document.getElementById('error').hidden")
        driver.save_screenshot(str(shot))
        logs = driver.get_log("browser")
    finally:
        driver.quit()
    return {"charts": charts, "requests": requests, "error_hidden": error_hidden, "logs": logs}


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)) or shutil.which("chromedriver") is None,
    reason="headless Chromium is not installed: apt-get install -y chromium chromium-driver",
)
async def test_dashboard_draws_every_chart_in_chromium(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    assert server.gateway.ledger is not None
    for r in traffic(time.time()):
        server.gateway.ledger.submit(r)
    shot = tmp_path / "dashboard.png"
    seen = await asyncio.to_thread(_browse, f"{server.url}/dashboard?key={ADMIN}", shot)
    assert seen["error_hidden"] is True
    assert seen["requests"] == "60"
    expected = {"c-spend", "c-requests", "c-savings", "c-model", "c-route", "c-feature", "c-key", "c-cache",
                "c-routing", "c-latency"}  # fmt: skip
    assert set(seen["charts"]) == expected
    for chart_id, info in seen["charts"].items():
        assert info["drawn"] and info["points"] > 0, (chart_id, info)
    errors = [e for e in seen["logs"] if e["level"] == "SEVERE"]
    assert errors == []
    assert shot.stat().st_size > 20_000


async def test_real_requests_reach_metrics_stats_and_cost_per_task(thrifty: RunningGateway) -> None:
    """Through the real server and the mock upstream: tasks, feedback, /metrics and stats agree."""
    import orjson

    async with aiohttp.ClientSession() as s:
        for i, task in enumerate(["build-1", "build-1", "build-2", None]):
            headers = {"X-Thrifty-Task": task} if task else {}
            body = {"model": "gpt-test", "messages": [{"role": "user", "content": f"step {i} please"}]}
            async with s.post(thrifty.url + "/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
        async with s.post(thrifty.url + "/v1/thrifty/feedback", json={"task": "build-1", "success": True}) as r:
            assert r.status == 200
        async with s.post(thrifty.url + "/v1/thrifty/feedback", json={"task": "build-2", "success": False}) as r:
            assert r.status == 200
        rows = thrifty.rows()
        async with s.get(thrifty.url + "/v1/thrifty/stats?since=1h") as r:
            stats = orjson.loads(await r.read())
        async with s.get(thrifty.url + "/metrics") as r:
            metrics = await r.text()
        # within dashboard.stats_cache_s (5 s) the same window's answer is shared, not recomputed
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "one more"}]}
        async with s.post(thrifty.url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
        async with s.get(thrifty.url + "/v1/thrifty/stats?since=1h") as r:
            assert orjson.loads(await r.read())["totals"]["requests"] == 4
        async with s.get(thrifty.url + "/v1/thrifty/stats?since=2h") as r:
            assert orjson.loads(await r.read())["totals"]["requests"] == 5
    costs = {row["request_id"]: row["cost_pico"] / 1e12 for row in rows}
    assert stats["totals"]["requests"] == 4 == _metric(metrics, "thrifty_requests_total", outcome="ok")
    assert stats["totals"]["cost"] == pytest.approx(sum(costs.values()))
    assert _metric(metrics, "thrifty_cost_usd_total") == pytest.approx(sum(costs.values()))
    task_costs = [row["cost_pico"] / 1e12 for row in rows if row["task"] in ("build-1", "build-2")]
    assert stats["tasks"]["tasks"] == 2 and stats["tasks"]["successful"] == 1
    # both judged tasks' spend over the one that succeeded
    assert stats["tasks"]["cost_per_successful_task"] == pytest.approx(sum(task_costs))


async def test_opentelemetry_spans_follow_the_genai_conventions(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (pip install 'thrifty[otel]')")
    gw = await start_gateway(mock_config(upstream, tmp_path, "metrics: {otel: {exporter: memory}}"))
    async with aiohttp.ClientSession() as s:
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}]}
        async with s.post(gw.url + "/v1/chat/completions", json=body, headers={"X-Thrifty-Tags": "route=docs"}) as r:
            assert r.status == 200
        async with s.post(gw.url + "/v1/chat/completions", json={**body, "messages": [
                {"role": "user", "content": "[500 always]"}]}) as r:  # fmt: skip
            assert r.status >= 500
    row = [r for r in gw.rows() if r["status"] == 200][0]
    spans = gw.gateway.services.otel[1].get_finished_spans()
    assert len(spans) == 2
    ok = next(s for s in spans if s.attributes["http.response.status_code"] == 200)
    failed = next(s for s in spans if s.attributes["http.response.status_code"] != 200)
    assert ok.name == "chat gpt-test"
    a = ok.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-test"
    assert a["gen_ai.usage.input_tokens"] == row["input_tokens"] + row["cache_read_tokens"]
    assert a["gen_ai.usage.output_tokens"] == row["output_tokens"]
    assert a["thrifty.route"] == "docs" and a["thrifty.cost_usd"] == pytest.approx(row["cost_pico"] / 1e12)
    assert (ok.end_time - ok.start_time) / 1e6 == pytest.approx(row["latency_ms"], abs=0.01)
    assert failed.attributes["error.type"].startswith("5") and not failed.status.is_ok
