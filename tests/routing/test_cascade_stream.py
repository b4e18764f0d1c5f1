"""A cascade for streaming clients: skipped by default, or buffered and replayed as their stream.

Over real HTTP, GSM8K answers replayed: the client streams (OpenAI chat chunks, Anthropic
Messages events or Responses events) and reads the cheap model's answer as a stream when the
cascade serves it.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import serving
from tests.routing.gsm8k_cascade import CHEAP, STRONG, cascade_config, cascade_files
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.routing.labeled import Example, load_labeled
from thrifty.server.app import create_app

PICO = Decimal(10) ** 12


@pytest.fixture(scope="module")
def files(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return cascade_files(routing_data, tmp_path_factory.mktemp("stream"))


def sse_data(raw: str) -> list[Any]:
    """The JSON payloads of an SSE body, in order (`[DONE]` kept as the string)."""
    out: list[Any] = []
    for line in raw.splitlines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def streamed_text(raw: str, protocol: str) -> str:
    events = [e for e in sse_data(raw) if e != "[DONE]"]
    if protocol == "responses":
        return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    if protocol == "anthropic":
        return "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    return "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])


async def stream_one(files: dict[str, Path], tmp: Path, cascade: str, ex: Example, protocol: str) -> tuple[str, tuple[Any, ...]]:
    """One streamed request through `thrifty serve`: the raw SSE body and the ledger row."""
    text = cascade_config(files, f'signals: "{files["cascade"]}", {cascade}', tmp / "ledger.db")
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    messages = [{"role": "user", "content": ex.text}]
    if protocol == "anthropic":
        path, body = "/v1/messages", {"model": STRONG, "max_tokens": 1024, "stream": True, "messages": messages}
    elif protocol == "responses":  # what Codex CLI sends
        path, body = "/v1/responses", {"model": STRONG, "stream": True, "input": ex.text}
    else:
        path = "/v1/chat/completions"
        body = {"model": STRONG, "stream": True, "stream_options": {"include_usage": True}, "messages": messages}
    async with (
        serving(create_app(gw)) as port,
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{path}", json=body) as r,
    ):
        raw = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream"), raw
    with sqlite3.connect(tmp / "ledger.db") as db:
        (row,) = db.execute("SELECT served_model, cost_pico, stream, outcome, extra FROM requests").fetchall()
    return raw, row


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "responses"])
async def test_a_buffered_cascade_streams_the_cheap_answer_it_serves(
    files: dict[str, Path], tmp_path: Path, protocol: str
) -> None:
    ex = load_labeled(files["test"])[3]
    raw, (served, cost, stream, outcome, extra) = await stream_one(
        files, tmp_path, "accept: 0.0, stream: buffer", ex, protocol
    )
    assert streamed_text(raw, protocol) == ex.candidates[CHEAP].response
    if protocol == "openai":
        assert sse_data(raw)[-1] == "[DONE]"
        assert sse_data(raw)[-2]["usage"]["completion_tokens"] > 0  # include_usage was asked for
    elif protocol == "anthropic":
        assert [e["type"] for e in sse_data(raw)][-1] == "message_stop"
    else:
        assert sse_data(raw)[-1]["type"] == "response.completed"
    assert served == CHEAP and stream == 1 and outcome == "ok"
    assert Decimal(cost) / PICO == ex.candidates[CHEAP].cost.quantize(Decimal("1e-12"))
    assert json.loads(extra)["route"]["cascade"]["accepted"] == CHEAP


async def test_a_buffered_cascade_that_escalates_streams_the_strong_model_live(
    files: dict[str, Path], tmp_path: Path
) -> None:
    ex = load_labeled(files["test"])[3]
    raw, (served, cost, _, outcome, extra) = await stream_one(
        files, tmp_path, "accept: 1.0, stream: buffer", ex, "openai"
    )
    assert streamed_text(raw, "openai") == ex.candidates[STRONG].response
    assert served == STRONG and outcome == "ok"
    # Both were paid: the cheap answer asked for and refused, and the strong one streamed.
    paid = ex.candidates[CHEAP].cost + ex.candidates[STRONG].cost
    assert Decimal(cost) / PICO == paid.quantize(Decimal("1e-12"))
    assert json.loads(extra)["escalations"][0]["best"] == CHEAP


async def test_by_default_a_streaming_request_skips_the_cascade(files: dict[str, Path], tmp_path: Path) -> None:
    ex = load_labeled(files["test"])[3]
    raw, (served, cost, _, outcome, extra) = await stream_one(files, tmp_path, "accept: 0.0", ex, "openai")
    assert streamed_text(raw, "openai") == ex.candidates[STRONG].response and outcome == "ok"
    assert served == STRONG and Decimal(cost) / PICO == ex.candidates[STRONG].cost.quantize(Decimal("1e-12"))
    assert json.loads(extra)["route"]["stream"] == "skipped the cascade"
