"""History budget against a mock OpenAI-compatible server on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import serving
from thrifty.compress.history import (
    SUMMARY_PREFIX,
    HistoryBudget,
    HistorySettings,
    Summarizer,
    SummaryCache,
)
from thrifty.protocol.view import answer_text


class MockUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        await asyncio.sleep(0.01)
        user = body["messages"][-1]["content"]
        summary = f"summary #{len(self.requests)} of {user.count('User:')} user messages"
        return web.json_response(
            {"choices": [{"message": {"role": "assistant", "content": summary}, "finish_reason": "stop"}]}
        )


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    mock = MockUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", mock.handle)
    async with serving(app) as port:
        mock.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        yield mock


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a travel agent."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Turn {i}: tell me about city number {i}. " * 20})
        messages.append({"role": "assistant", "content": f"City {i} is lovely in spring. " * 20})
    return messages


def summarizer(mock: MockUpstream) -> Summarizer:
    async def summarize(model: str, body: dict[str, Any]) -> str | None:
        async with aiohttp.ClientSession() as session, session.post(mock.url, json=body) as resp:
            return answer_text(await resp.json()).strip() or None

    return summarize


async def test_old_turns_become_one_cached_summary(upstream: MockUpstream) -> None:
    settings = HistorySettings(enabled=True, model="cheap", keep_turns=2, budget_tokens=500)
    budget = HistoryBudget(SummaryCache(16))
    messages = conversation(6) + [{"role": "user", "content": "And the last one?"}]
    body = {"model": "big", "messages": messages}
    result = await budget.apply("openai", body, settings, summarizer(upstream))
    assert result is not None
    new, saved, _ = result
    # System, summary, then the last turns verbatim (7 turns: 4 summarised, 3 kept).
    assert new["messages"][0] == messages[0]
    assert new["messages"][1]["role"] == "system" and new["messages"][1]["content"].startswith(SUMMARY_PREFIX)
    assert new["messages"][2:] == messages[9:]
    assert saved > 500 and body["messages"] is messages and len(messages) == 14
    assert upstream.requests[0]["model"] == "cheap"
    # The next request of the same conversation reuses the summary: no second call.
    again = {"model": "big", "messages": messages[:-1] + [{"role": "user", "content": "Different question"}]}
    assert (await budget.apply("openai", again, settings, summarizer(upstream))) is not None
    assert len(upstream.requests) == 1


async def test_concurrent_requests_share_one_summary_call(upstream: MockUpstream) -> None:
    settings = HistorySettings(enabled=True, model="cheap", keep_turns=2, budget_tokens=100)
    budget = HistoryBudget(SummaryCache(16))
    body = {"model": "big", "messages": conversation(5) + [{"role": "user", "content": "q"}]}
    results = await asyncio.gather(
        *(budget.apply("openai", body, settings, summarizer(upstream)) for _ in range(5))
    )
    assert all(r is not None for r in results) and len(upstream.requests) == 1


async def test_step_summaries_build_on_the_previous_one(upstream: MockUpstream, tmp_path: Path) -> None:
    settings = HistorySettings(
        enabled=True, model="cheap", keep_turns=2, every=2, budget_tokens=100, store=str(tmp_path / "s.db")
    )
    budget = HistoryBudget(SummaryCache(16, settings.store))
    short = conversation(4) + [{"role": "user", "content": "q"}]
    assert await budget.apply("openai", {"messages": short}, settings, summarizer(upstream)) is not None
    longer = conversation(6) + [{"role": "user", "content": "q"}]
    assert await budget.apply("openai", {"messages": longer}, settings, summarizer(upstream)) is not None
    assert len(upstream.requests) == 2
    second = upstream.requests[1]["messages"][-1]["content"]
    assert second.startswith("Summary so far:\nsummary #1") and "Turn 0" not in second and "Turn 3" in second
    # Summaries survive a restart through SQLite.
    fresh = HistoryBudget(SummaryCache(16, settings.store))
    assert await fresh.apply("openai", {"messages": longer}, settings, summarizer(upstream)) is not None
    assert len(upstream.requests) == 2


async def test_short_conversation_or_failed_summary_leaves_history_alone(upstream: MockUpstream) -> None:
    settings = HistorySettings(enabled=True, model="cheap", keep_turns=2, budget_tokens=100_000)
    budget = HistoryBudget(SummaryCache(16))
    body = {"messages": conversation(6) + [{"role": "user", "content": "q"}]}
    assert await budget.apply("openai", body, settings, summarizer(upstream)) is None

    async def failing(model: str, request: dict[str, Any]) -> str | None:
        return None

    assert (
        await budget.apply("openai", body, settings.model_copy(update={"budget_tokens": 10}), failing) is None
    )
    assert upstream.requests == []


async def test_anthropic_summary_goes_to_system_and_tool_turns_stay_whole(upstream: MockUpstream) -> None:
    settings = HistorySettings(enabled=True, model="cheap", keep_turns=1, budget_tokens=10)
    messages: list[dict[str, Any]] = []
    for i in range(3):
        messages += [
            {"role": "user", "content": f"Look up order {i}. " * 30},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"t{i}", "name": "lookup", "input": {"id": i}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "shipped " * 30}],
            },
            {"role": "assistant", "content": f"Order {i} shipped."},
        ]
    body = {"model": "claude", "system": "Support agent.", "messages": messages}

    async def summarize(model: str, request: dict[str, Any]) -> str | None:
        assert request["system"] and request["messages"][0]["role"] == "user"
        return "Orders 0 and 1 shipped."

    result = await HistoryBudget(SummaryCache(4)).apply("anthropic", body, settings, summarize)
    assert result is not None
    new, _, _ = result
    assert new["system"] == "Support agent.\n\n" + SUMMARY_PREFIX + "Orders 0 and 1 shipped."
    assert new["messages"] == messages[8:]
