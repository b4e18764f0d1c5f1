"""A local mock OpenAI server (the provider edge) and configs pointing at it.

The mock's models answer arithmetic questions "What is A+B?": `good-model` answers
correctly, `bad-model` adds one, `flaky-model` answers correctly except on even A.
Each reply carries usage so that the gateway prices it; `judge-model` returns a score.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import serving


@dataclass
class MockOpenAI:
    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    judge_reply: str = "Score: 9"
    judge_status: int = 200


def answer(model: str, question: str) -> str:
    m = re.search(r"(\d+)\s*\+\s*(\d+)", question)
    if not m:
        return "I do not know."
    a, b = int(m.group(1)), int(m.group(2))
    right = a + b
    if model == "bad-model":
        return f"Let me add: {a} + {b} = {right + 1}.\n#### {right + 1}"
    if model == "flaky-model" and a % 2 == 0:
        return f"#### {right - 1}"
    return f"Let me add: {a} + {b} = {right}.\n#### {right}"


@pytest.fixture
async def mock_openai() -> AsyncIterator[MockOpenAI]:
    mock = MockOpenAI()

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        mock.calls.append(body)
        model = body["model"]
        if model.startswith("slow-"):  # a slow model: answers like the rest of its name, after 0.5 s
            await asyncio.sleep(0.5)
            model = model[len("slow-"):]
        question = body["messages"][-1]["content"]
        if model == "judge-model":
            if mock.judge_status != 200:
                return web.json_response({"error": {"message": "judge down", "type": "server_error"}},
                                         status=mock.judge_status)
            text = mock.judge_reply
        else:
            text = answer(model, question)
        return web.json_response({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        })

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as port:
        mock.url = f"http://127.0.0.1:{port}/v1"
        yield mock


def write_config(path: Path, url: str, models: list[str], extra: str = "") -> Path:
    lines = ["store: \"sqlite:///:memory:\"", "models:"]
    for name in models:
        # one price per model name: the gateway's pricer remembers rates by model name
        price = "{input: 1.0, output: 2.0}" if name == "good-model" else "{input: 0.1, output: 0.2}"
        lines += [f"  - name: {name}", "    provider: openai", f"    base_url: {url}", f"    price: {price}",
                  "    max_retries: 0", "    timeout: 5"]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path
