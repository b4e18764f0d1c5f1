"""The dashboard's Plan page on a real server: its JSON API, and the page in headless Chromium.

The browser test moves a slider and checks the bill changes, checks the waterfall and comparison
charts are drawn with data, presses "Use my traffic" (read from the gateway's real SQLite ledger)
and keeps a screenshot in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import serving
from tests.planner.test_traffic import _records
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

ADMIN, USER = "sk-admin-plan", "sk-user-plan"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Server:
    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = parse_config(f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
server:
  keys:
    - {{name: ops, sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}, admin: true}}
    - {{name: app, sha256: {hashlib.sha256(USER.encode()).hexdigest()}}}
""")
    gateway = Gateway(config)
    async with serving(create_app(gateway)) as port:
        yield Server(gateway, port)


async def _call(method: str, url: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, data=body) as r:
        text = await r.text()
        return r.status, orjson.loads(text) if r.content_type == "application/json" else text


async def test_the_plan_api_answers_what_the_cli_does(server: Server) -> None:
    seed = orjson.dumps(
        {"requests_per_day": 100_000, "input_tokens": 1500, "output_tokens": 500, "model": "gpt-4-turbo"}
    )
    assert (await _call("POST", server.url + "/v1/thrifty/plan", None, seed))[0] == 401
    assert (await _call("POST", server.url + "/v1/thrifty/plan", USER, seed))[0] == 403
    status, plan = await _call("POST", server.url + "/v1/thrifty/plan", ADMIN, seed)
    assert status == 200 and plan["bill"]["base"] == pytest.approx(90_000)
    assert plan["selfhost"]["options"] and plan["recommendation"]
    status, err = await _call(
        "POST", server.url + "/v1/thrifty/plan", ADMIN, orjson.dumps({"requests_per_day": -1})
    )
    assert status == 400 and "requests_per_day" in err["error"]["message"]
    status, err = await _call("POST", server.url + "/v1/thrifty/plan", ADMIN, b"{not json")
    assert status == 400
    status, html = await _call("GET", server.url + "/dashboard/plan", ADMIN)
    assert status == 200 and '"open_models"' in html and "/*PLAN_CONFIG*/" not in html
    status, js = await _call("GET", server.url + "/dashboard/static/plan.js", None)
    assert status == 200 and "/v1/thrifty/plan" in js


async def test_use_my_traffic_reads_the_gateways_ledger(server: Server) -> None:
    status, err = await _call("GET", server.url + "/v1/thrifty/plan/traffic", ADMIN)
    assert status == 404 and "no successful requests" in err["error"]["message"]
    assert server.gateway.ledger is not None
    records = _records()
    for r in records:
        server.gateway.ledger.submit(r)
    status, found = await _call("GET", server.url + "/v1/thrifty/plan/traffic", ADMIN)
    assert status == 200, found
    assert found["summary"]["requests"] == sum(r.outcome == "ok" for r in records)
    assert found["workload"]["hourly"][9] == 20 and found["workload"]["model"] == "gpt-4o"


def _browse(url: str, shot: Path) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1500"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    seen: dict[str, Any] = {}
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        seen["error_hidden"] = driver.execute_script("return document.getElementById('error').hidden")
        seen["bill_before"] = float(driver.execute_script("return document.body.dataset.bill"))
        renders = int(driver.execute_script("return document.body.dataset.renders"))
        # move the cache-hit-rate slider as a user would: set it and fire `input`
        driver.execute_script("const s = document.getElementById('s-cache'); s.value = '80';"
                              "s.dispatchEvent(new Event('input', {bubbles: true}));")  # fmt: skip
        wait.until(lambda d: int(d.execute_script("return document.body.dataset.renders")) > renders)
        seen["bill_after"] = float(driver.execute_script("return document.body.dataset.bill"))
        seen["cache_label"] = driver.execute_script("return document.getElementById('o-cache').textContent")
        seen["charts"] = driver.execute_script(
            """return Object.fromEntries(Object.entries(window.__charts).map(([id, c]) => [id, {
                 drawn: c.canvas.width > 0 && c.canvas.height > 0,
                 bars: c.data.datasets[0].data.length, labels: c.data.labels}]))"""
        )
        seen["rows"] = driver.execute_script("return document.querySelectorAll('#t-options tr').length")
        renders = int(driver.execute_script("return document.body.dataset.renders"))
        driver.find_element("id", "b-traffic").click()
        wait.until(lambda d: d.execute_script("return document.body.dataset.traffic") is not None)
        wait.until(lambda d: int(d.execute_script("return document.body.dataset.renders")) > renders)
        seen["traffic"] = driver.execute_script("return document.body.dataset.traffic")
        seen["rpd"] = driver.execute_script("return document.getElementById('o-rpd').textContent")
        seen["peak"] = driver.execute_script("return document.getElementById('o-peak').textContent")
        seen["status"] = driver.execute_script("return document.getElementById('status').textContent")
        driver.save_screenshot(str(shot))
        seen["logs"] = driver.get_log("browser")
    finally:
        driver.quit()
    return seen


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)) or shutil.which("chromedriver") is None,
    reason="headless Chromium is not installed: apt-get install -y chromium chromium-driver",
)
async def test_the_plan_page_in_chromium(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    assert server.gateway.ledger is not None
    records = _records()
    for r in records:
        server.gateway.ledger.submit(r)
    shot = tmp_path / "plan.png"
    seen = await asyncio.to_thread(_browse, f"{server.url}/dashboard/plan?key={ADMIN}", shot)
    assert seen["error_hidden"] is True
    # a higher cache hit rate lowers the bill the page shows
    assert seen["cache_label"] == "80%" and seen["bill_after"] < seen["bill_before"]
    wf = seen["charts"]["c-waterfall"]
    assert wf["drawn"] and wf["labels"] == [
        "no lever",
        "cache",
        "route",
        "compress",
        "cap",
        "batch",
        "after levers",
    ]
    assert seen["charts"]["c-compare"]["drawn"] and seen["charts"]["c-compare"]["bars"] >= 2
    assert seen["rows"] > 2  # header + options
    ok = [r for r in records if r.outcome == "ok"]
    assert seen["traffic"] == str(len(ok)) and seen["peak"] == "profile" and "ledger" in seen["status"]
    span_days = (max(r.ts for r in ok) - min(r.ts for r in ok)) / 86400
    assert int(seen["rpd"].replace(",", "")) == pytest.approx(
        len(ok) / span_days, rel=0.03
    )  # slider resolution
    assert [e for e in seen["logs"] if e["level"] == "SEVERE"] == []
    assert shot.stat().st_size > 20_000
