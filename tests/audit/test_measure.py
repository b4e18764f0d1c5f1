"""`thrifty audit --measure`: a sample replayed through a candidate, graded against the logged answers.

The provider edge is a local mock OpenAI server: `good-model` adds correctly, `flaky-model`
gets every even first operand wrong, and `judge-model` compares the final number of the
assistant's answer with the reference's (as a judge reading both would).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from tests.conftest import serving
from tests.evals.conftest import answer, write_config
from thrifty.audit.cli import audit
from thrifty.audit.measure import measure
from thrifty.config import load_config

FINAL = re.compile(r"####\s*(-?\d+)")


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async def chat(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        text = body["messages"][-1]["content"]
        if body["model"] == "judge-model":
            ref, _, got = text.partition("Assistant's answer:")
            same = FINAL.findall(ref)[-1:] == FINAL.findall(got)[-1:]
            reply = "Score: 10" if same else "Score: 2"
        else:
            reply = answer(body["model"], text)
        return web.json_response({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        })  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}/v1"


def _log(path: Path, n: int = 40) -> Path:
    lines = []
    for a in range(1, n + 1):
        q = f"What is {a}+{a + 3}?"
        lines.append(json.dumps({
            "timestamp": 1_790_000_000 + a,
            "request": {"model": "good-model", "temperature": 0, "messages": [{"role": "user", "content": q}]},
            "response": {"model": "good-model", "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": answer("good-model", q)}}]},
            "cost": 0.01,
        }))  # fmt: skip
    lines.append(json.dumps({"request": {"model": "good-model", "messages": []}, "status": 500}))  # no answer: skipped
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_cheaper_model_is_measured_in_cost_and_quality(tmp_path: Path, upstream: str) -> None:
    config = load_config(str(write_config(tmp_path / "c.yaml", upstream, ["good-model", "flaky-model", "judge-model"])))
    res = await measure(str(_log(tmp_path / "log.jsonl")), config, 40, "judge-model",
                        model_map={"good-model": "flaky-model"})  # fmt: skip
    assert res.sampled == res.eligible == res.answered == res.graded == 40 and res.failed == 0
    assert res.served == {"flaky-model": 40}
    # flaky-model is wrong on every even first operand: half the answers
    assert res.as_good["mean"] == pytest.approx(0.5)
    assert 0.3 < res.as_good["low"] < 0.5 < res.as_good["high"] < 0.7
    assert res.quality_delta["mean"] == pytest.approx(-0.5)
    # 100 + 20 tokens at $0.1 / $0.2 per million, against $0.01 logged per request
    per_request = (100 * 0.1 + 20 * 0.2) / 1e6
    assert res.candidate_cost["mean"] == pytest.approx(per_request)
    assert res.cost_cut["mean"] == pytest.approx(1 - per_request / 0.01)
    assert res.cost_delta["mean"] == pytest.approx(per_request - 0.01)


async def test_the_same_model_keeps_its_quality(tmp_path: Path, upstream: str) -> None:
    config = load_config(str(write_config(tmp_path / "c.yaml", upstream, ["good-model", "judge-model"])))
    res = await measure(str(_log(tmp_path / "log.jsonl")), config, 10, "judge-model", seed=3)
    assert res.sampled == 10 and res.eligible == 40
    assert res.as_good == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 10}


async def test_the_command_prints_the_measurement(tmp_path: Path, upstream: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", upstream, ["good-model", "flaky-model", "judge-model"])
    log = _log(tmp_path / "log.jsonl")
    args = [str(log), "--near-dup-sample", "0", "--no-progress", "--measure", "20", "--config", str(cfg),
            "--judge", "judge-model", "--model-map", "good-model=flaky-model"]  # fmt: skip
    # in a thread: the command runs its own event loop while this one keeps serving the mock
    result = await asyncio.to_thread(CliRunner().invoke, audit, args)
    assert result.exit_code == 0, result.output
    assert "20 of 40 logged requests" in result.output and "cost cut: 99.9%" in result.output
    assert "answers judged as good as the logged one" in result.output
    missing = CliRunner().invoke(audit, [str(log), "--measure", "5"])
    assert missing.exit_code != 0 and "--measure needs --config" in missing.output
    unknown = await asyncio.to_thread(CliRunner().invoke, audit, [str(log), "--no-progress", "--near-dup-sample", "0", "--measure", "5",
                                         "--config", str(cfg), "--judge", "nope"])  # fmt: skip
    assert unknown.exit_code != 0 and "--judge 'nope' is not a model" in unknown.output
