"""The cascade's judge tier: a model grades the cheap answer the scorer is unsure of.

GSM8K answers are replayed through the gateway's pipeline; the judge is a local mock of an
OpenAI-compatible server (the provider edge) that passes the answers it is told are right.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import serving
from tests.routing.gsm8k_cascade import CHEAP, STRONG, cascade_config, cascade_files, serve
from thrifty.config import ConfigError, parse_config
from thrifty.gateway import Gateway
from thrifty.routing.cascade import judge_needed
from thrifty.routing.labeled import Example, load_labeled
from thrifty.routing.settings import JudgeTierSettings
from thrifty.routing.stage import RouteStage
from thrifty.types import Context

#: The mock judge's price and usage: 100 input and 20 output tokens at $1 / $2 per million.
JUDGE_COST = Decimal("0.00014")


@dataclass
class MockJudge:
    url: str = ""
    #: answers the judge passes (9/10); any other gets 2/10
    right: set[str] = field(default_factory=set)
    status: int = 200
    delay: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def judge() -> AsyncIterator[MockJudge]:
    mock = MockJudge()

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        mock.calls.append(body)
        await asyncio.sleep(mock.delay)
        if mock.status != 200:
            return web.json_response({"error": {"message": "judge down", "type": "server_error"}}, status=mock.status)
        if body["model"] == "tool-model":  # a cheap agent model: it answers with a tool call
            return web.json_response({
                "id": "chatcmpl-tool", "object": "chat.completion", "created": 0, "model": "tool-model",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
            })
        graded = body["messages"][-1]["content"].split("Assistant's answer:\n", 1)[1]
        text = "The working checks out.\nScore: 9" if graded in mock.right else "The total is wrong.\nScore: 2"
        return web.json_response({
            "id": "chatcmpl-judge", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        })  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as port:
        mock.url = f"http://127.0.0.1:{port}/v1"
        yield mock


@pytest.fixture(scope="module")
def files(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return cascade_files(routing_data, tmp_path_factory.mktemp("judge"))


def judge_model(judge: MockJudge) -> str:
    return f"""  - {{name: judge, provider: openai, base_url: "{judge.url}", price: {{input: 1.0, output: 2.0}},
      max_retries: 0, timeout: 5}}
"""


async def gateway(files: dict[str, Path], judge: MockJudge, cascade: str) -> Gateway:
    gw = Gateway(parse_config(cascade_config(files, cascade, more_models=judge_model(judge)), source="thrifty.yaml"))
    await gw.start(ledger=False)
    return gw


def example(files: dict[str, Path], cheap_right: bool) -> Example:
    """A test question the cheap model answered rightly (or wrongly) and the strong one rightly."""
    return next(
        ex for ex in load_labeled(files["test"])
        if (ex.candidates[CHEAP].quality == 1.0) == cheap_right and ex.candidates[STRONG].quality == 1.0
    )  # fmt: skip


TIERS = f"tiers: [{CHEAP}, {STRONG}], judge: {{model: judge}}"


async def test_a_cheap_answer_the_judge_passes_is_served_and_the_judge_is_paid(
    files: dict[str, Path], judge: MockJudge
) -> None:
    ex = example(files, cheap_right=True)
    judge.right = {ex.candidates[CHEAP].response or ""}
    gw = await gateway(files, judge, TIERS)
    ctx, text = await serve(gw, ex)
    assert ctx.target_model == CHEAP and text == ex.candidates[CHEAP].response
    decision = ctx.route_decision
    assert decision is not None and decision.escalations == []
    assert decision.cascade is not None and decision.cascade["judge"]["score"] == 9.0
    # The judge saw the question and the answer, and its call is the only side cost.
    (call,) = judge.calls
    assert ex.text in call["messages"][-1]["content"] and call["temperature"] == 0
    assert ctx.side_cost == JUDGE_COST == decision.judge_cost
    # The route's saving is net of the judge.
    assert ctx.savings["route"] == ex.candidates[STRONG].cost - ex.candidates[CHEAP].cost - JUDGE_COST


async def test_a_cheap_answer_the_judge_fails_escalates(files: dict[str, Path], judge: MockJudge) -> None:
    ex = example(files, cheap_right=False)
    gw = await gateway(files, judge, TIERS)
    ctx, text = await serve(gw, ex)
    assert ctx.target_model == STRONG and text == ex.candidates[STRONG].response
    (esc,) = ctx.route_decision.escalations
    assert esc["model"] == CHEAP and esc["reason"] == "judge judge: 2/10 < 8" and esc["judge"]["score"] == 2.0
    assert ctx.side_cost == ex.candidates[CHEAP].cost + JUDGE_COST
    assert ctx.savings["route"] == -(ex.candidates[CHEAP].cost + JUDGE_COST)


@pytest.mark.parametrize(
    ("status", "delay", "reason"),
    [(503, 0.0, "error 503"), (200, 2.0, "timed out after 0.3s")],
)
async def test_a_judge_that_fails_never_lets_an_answer_through(
    files: dict[str, Path], judge: MockJudge, status: int, delay: float, reason: str
) -> None:
    ex = example(files, cheap_right=True)
    judge.right = {ex.candidates[CHEAP].response or ""}  # it would pass, if it answered
    judge.status, judge.delay = status, delay
    gw = await gateway(files, judge, f"tiers: [{CHEAP}, {STRONG}], judge: {{model: judge, timeout: 0.3}}")
    ctx, _ = await serve(gw, ex)
    assert ctx.target_model == STRONG
    (esc,) = ctx.route_decision.escalations
    assert esc["reason"].startswith("judge judge: ") and reason in esc["reason"]


async def test_on_signals_the_judge_grades_only_the_unsure_band(files: dict[str, Path], judge: MockJudge) -> None:
    ex = example(files, cheap_right=True)
    judge.right = {ex.candidates[CHEAP].response or ""}
    # accept 1.0: no score clears it alone, so the judge decides.
    gw = await gateway(files, judge, f'signals: "{files["cascade"]}", accept: 1.0, judge: {{model: judge}}')
    ctx, text = await serve(gw, ex)
    assert ctx.target_model == CHEAP and text == ex.candidates[CHEAP].response
    info = ctx.route_decision.cascade
    assert info["stage"] == 0 and info["judge"]["score"] == 9.0 and info["score"] < 1.0
    assert ctx.side_cost == JUDGE_COST and len(judge.calls) == 1
    # Below min_score the cascade escalates without paying the judge.
    gw = await gateway(files, judge, f'signals: "{files["cascade"]}", accept: 1.0, judge: {{model: judge, min_score: 1.0}}')
    ctx, _ = await serve(gw, ex)
    assert ctx.target_model == STRONG and len(judge.calls) == 1
    (esc,) = ctx.route_decision.escalations
    assert esc["reason"].startswith("score ") and "judge" not in esc


async def test_the_ledger_row_carries_the_judge(files: dict[str, Path], judge: MockJudge, tmp_path: Path) -> None:
    """Over real HTTP: the row's cost is the served answer plus the judge, and says what it scored."""
    import json
    import sqlite3

    import aiohttp

    from thrifty.server.app import create_app

    ex = example(files, cheap_right=True)
    judge.right = {ex.candidates[CHEAP].response or ""}
    text = cascade_config(files, TIERS, tmp_path / "ledger.db", judge_model(judge))
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    async with serving(create_app(gw)) as port, aiohttp.ClientSession() as http:
        body = {"model": STRONG, "messages": [{"role": "user", "content": ex.text}]}
        async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
            assert data["choices"][0]["message"]["content"] == ex.candidates[CHEAP].response
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        ((served, cost, extra),) = db.execute("SELECT served_model, cost_pico, extra FROM requests").fetchall()
    assert served == CHEAP
    assert Decimal(cost) / Decimal(10) ** 12 == ex.candidates[CHEAP].cost + JUDGE_COST
    verdict = json.loads(extra)["route"]["cascade"]["judge"]
    assert verdict == {"model": "judge", "cost": str(JUDGE_COST), "score": 9.0}


async def test_the_judge_grades_a_tool_call_not_an_empty_answer(files: dict[str, Path], judge: MockJudge) -> None:
    """An agent's cheap tier answers with a tool call: the judge sees the call and can pass it."""
    judge.right = {'[tool call] get_weather({"city": "Paris"})'}
    tool_model = judge_model(judge).replace("name: judge", "name: tool-model")
    text = cascade_config(files, f"tiers: [tool-model, {STRONG}], judge: {{model: judge}}",
                          more_models=judge_model(judge) + tool_model)
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    await gw.start(ledger=False)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = {"model": STRONG, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": tools}
    ctx = Context(protocol="openai", body=body, config=gw.config, requested_model=STRONG)
    assert gw.pipeline is not None
    reply = await gw.pipeline(ctx)
    assert ctx.target_model == "tool-model" and reply.body is not None
    assert reply.body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    (graded,) = [c for c in judge.calls if c["model"] == "judge"]
    assert graded["messages"][-1]["content"].endswith('[tool call] get_weather({"city": "Paris"})')


def test_when_the_judge_is_asked() -> None:
    j = JudgeTierSettings(model="judge", min_score=0.2)
    assert judge_needed(None, 0.8, j)  # no scorer: every answer that passed the verifiers
    assert judge_needed(0.5, 0.8, j) and judge_needed(0.2, 0.8, j)
    assert not judge_needed(0.8, 0.8, j)  # confident enough on its own
    assert not judge_needed(0.1, 0.8, j)  # too doubtful to be worth a judge call
    assert not judge_needed(0.5, 0.8, None)


def test_the_judge_must_be_a_configured_model_on_its_scale(files: dict[str, Path], judge: MockJudge) -> None:
    text = cascade_config(files, f"tiers: [{CHEAP}, {STRONG}], judge: {{model: nope}}", more_models=judge_model(judge))
    with pytest.raises(ConfigError, match=r"cascade\.judge: not configured models: nope"):
        RouteStage.build(Gateway(parse_config(text)))
    text = cascade_config(
        files, f"tiers: [{CHEAP}, {STRONG}], judge: {{model: judge, pass_score: 11}}", more_models=judge_model(judge)
    )
    with pytest.raises(ConfigError, match="pass_score 11 is above the scale"):
        RouteStage.build(Gateway(parse_config(text)))
