"""Shadow evaluation on live traffic: a lever that hurts answers gets turned off for its route."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import serving
from thrifty.config import load_config
from thrifty.evals import shadow
from thrifty.gateway import Gateway
from thrifty.pipeline.lever import Lever
from thrifty.pipeline.pipeline import Pipeline
from thrifty.routing.settings import RouteSettings
from thrifty.types import Context, Handler, Reply

from .conftest import MockOpenAI, write_config


class Downgrade(Lever[RouteSettings]):
    """A routing lever that sends every request to `bad-model`. It never checks whether it
    is switched off: the pipeline's guard skips it when shadow evaluation turned it off for
    the route, or for a shadow rerun."""

    name = "route"
    Settings = RouteSettings

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        ctx.body = {**ctx.body, "model": "bad-model"}
        ctx.target_model = "bad-model"
        ctx.save(self.name, Decimal("0.0001"))
        return await next(ctx)


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}/hook", received


async def start(config_path: Path) -> tuple[Gateway, shadow.ShadowStage]:
    gw = Gateway(load_config(config_path))
    await gw.start(ledger=False)
    stage = shadow.ShadowStage.build(gw)
    assert stage is not None and gw.services.shadow is stage
    assert gw.pipeline is not None
    gw.pipeline = Pipeline([stage, Downgrade(gw)], gw.pipeline.terminal, gw.overrides)
    return gw, stage


async def ask(gw: Gateway, i: int, route: str = "math") -> Reply:
    body = {"model": "good-model", "messages": [{"role": "user", "content": f"What is {i}+{i + 1}?"}]}
    ctx = Context(protocol="openai", body=body, config=gw.config, tags={"route": route}, requested_model="good-model")
    assert gw.pipeline is not None
    return await gw.pipeline(ctx)


def answer_text(reply: Reply) -> str:
    assert reply.body is not None
    return str(reply.body["choices"][0]["message"]["content"])


async def test_bad_lever_is_turned_off_for_its_route(
    tmp_path: Path, mock_openai: MockOpenAI, webhook: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="thrifty.evals.shadow")
    url, received = webhook
    db = tmp_path / "shadow.db"
    extra = (
        "shadow:\n  sample: 1.0\n  reference_model: slow-good-model\n  grader: {type: numeric}\n"
        f"  tolerance: 0.2\n  min_samples: 5\n  webhook: {url}\n  db: {db}\n"
        "routes:\n  chat:\n    shadow: {sample: 0.0}\n"
    )
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model", "bad-model", "slow-good-model"], extra)
    gw, stage = await start(cfg)
    try:
        started = time.perf_counter()
        first = await ask(gw, 1)
        assert time.perf_counter() - started < 0.4  # the 0.5 s reference call runs in the background
        assert "#### 4" in answer_text(first) and first.served_model == "bad-model"
        for i in range(2, 6):
            await ask(gw, i)
        await stage.drain()
        assert ("math", "route") in gw.overrides
        assert "turning lever route off for route math" in caplog.text
        assert received and received[0]["event"] == "lever_disabled"
        assert received[0]["route"] == "math" and received[0]["lever"] == "route" and received[0]["samples"] == 5
        # the lever now stands aside on this route: the client gets the good model's answer
        fixed = await ask(gw, 7)
        assert "#### 15" in answer_text(fixed) and fixed.served_model == "good-model"
        # other routes are untouched, and a route with sample 0 is never shadowed
        other = await ask(gw, 1, route="chat")
        assert other.served_model == "bad-model"
        await stage.drain()
        snap = stage.monitor.snapshot()
        assert snap["disabled"] == [["math", "route"]]
        (row,) = [r for r in snap["levers"] if r["route"] == "math"]
        assert row["samples"] == 5 and row["mean_delta"] == 1.0
    finally:
        await gw.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT route, lever, mode, status, delta, shadow_cost_usd FROM shadow_results").fetchall()
    assert len(rows) == 5 and all(r[:5] == ("math", "route", "reference", "fail", 1.0) for r in rows)
    assert all(r[5] > 0 for r in rows)
    # a restart keeps the lever off
    gw2, stage2 = await start(cfg)
    try:
        assert ("math", "route") in gw2.overrides
        assert stage2.monitor.enable("math", "route")
        assert ("math", "route") not in gw2.overrides
    finally:
        await gw2.close()


async def test_lever_off_mode_and_a_harmless_lever_stays_on(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    extra = (
        "shadow:\n  sample: 1.0\n  grader: {type: numeric}\n  tolerance: 0.2\n  min_samples: 3\n"
        f"  db: {tmp_path / 's.db'}\n"
    )
    # the 'bad' model here is good too: the lever saves money and costs no quality
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model", "bad-model"], extra)
    gw, stage = await start(cfg)
    try:
        stage.gateway.pipeline = Pipeline([stage, _Harmless(gw)], gw.pipeline.terminal, gw.overrides)  # type: ignore[union-attr]
        for i in range(4):
            await ask(gw, i)
        await stage.drain()
        snap = stage.monitor.snapshot()
        assert snap["disabled"] == []
        (row,) = snap["levers"]
        assert row["samples"] == 4 and row["mean_delta"] == 0.0
        # the lever-off rerun went to good-model (lever off), the served answers to good-model too
        models = [c["model"] for c in mock_openai.calls]
        assert models.count("good-model") == 8
    finally:
        await gw.close()


class _Harmless(Downgrade):
    async def handle(self, ctx: Context, next: Handler) -> Reply:
        ctx.save(self.name, Decimal("0.0001"))
        return await next(ctx)


async def test_judge_failure_is_ungraded_and_never_counts(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    mock_openai.judge_status = 500
    extra = (
        "shadow:\n  sample: 1.0\n  reference_model: good-model\n"
        "  grader: {type: judge, model: judge-model, rubric: same sum as the reference}\n"
        f"  min_samples: 1\n  tolerance: 0.0\n  db: {tmp_path / 's.db'}\n"
    )
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model", "bad-model", "judge-model"], extra)
    gw, stage = await start(cfg)
    try:
        for i in range(3):
            await ask(gw, i)
        await stage.drain()
        (row,) = stage.monitor.snapshot()["levers"]
        assert row["samples"] == 0 and row["ungraded"] == 3
        assert not gw.overrides
    finally:
        await gw.close()


def test_bad_shadow_config_names_the_problem(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/v1", ["good-model"],
                       "shadow:\n  sample: 2\n  grader: {type: numeric}\n")
    with pytest.raises(Exception, match="sample"):
        shadow.ShadowStage.build(Gateway(load_config(cfg)))


async def test_state_over_http(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from thrifty.server.app import create_app

    extra = f"shadow:\n  sample: 1.0\n  reference_model: good-model\n  grader: {{type: numeric}}\n  db: {tmp_path / 's.db'}\n"
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model"], extra)
    gw = Gateway(load_config(cfg))
    client = TestClient(TestServer(create_app(gw)))
    await client.start_server()
    try:
        gw.overrides.disable("math", "route")
        resp = await client.get("/v1/thrifty/shadow")
        data = await resp.json()
        assert resp.status == 200 and data["enabled"] and data["disabled"] == [["math", "route"]]
        resp = await client.post("/v1/thrifty/shadow/enable", json={"route": "math", "lever": "route"})
        assert (await resp.json())["was_disabled"] is True
        assert ("math", "route") not in gw.overrides
    finally:
        await client.close()
    await asyncio.sleep(0)


async def test_shadow_calls_are_in_the_ledger(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    extra = f"shadow:\n  sample: 1.0\n  reference_model: good-model\n  grader: {{type: numeric}}\n  db: {tmp_path / 's.db'}\n"
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model", "bad-model"], extra)
    text = cfg.read_text().replace('store: "sqlite:///:memory:"', f'store: "sqlite:///{tmp_path / "ledger.db"}"')
    cfg.write_text(text)
    gw = Gateway(load_config(cfg))
    await gw.start()
    stage = shadow.ShadowStage.build(gw)
    assert stage is not None and gw.pipeline is not None and gw.ledger is not None
    gw.pipeline = Pipeline([stage, Downgrade(gw)], gw.pipeline.terminal, gw.overrides)
    try:
        for i in range(2):
            await ask(gw, i)
        await stage.drain()
        assert gw.ledger.flush(5.0)
        rows = list(gw.ledger.store.rows())
    finally:
        await gw.close()
    assert len(rows) == 2
    for row in rows:
        assert row["request_id"].endswith("-shadow") and row["served_model"] == "good-model"
        assert row["cost_usd"] == pytest.approx(0.00014)  # 100 in at $1/M + 20 out at $2/M, counted once
        assert json.loads(row["tags"])["shadow"] == "good-model"
        assert json.loads(row["extra"])["grade"] == "fail"
