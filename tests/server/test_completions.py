"""Legacy `/v1/completions` through the official SDK: relayed to an OpenAI-compatible
model, streamed or not, billed once; refused by name for a model that has none; answered
by the exact cache and deduplicated like chat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.server import completions as completions_server
from thrifty.testing.mock_upstream import MockUpstream


def client(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)


async def test_plain_completion_with_suffix_passes_through(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    out = await client(thrifty).completions.create(model="gpt-test", prompt="def add(a, b):", suffix="\n", max_tokens=9)
    assert out.choices[0].text == " echo: def add(a, b):"
    assert upstream.bodies[-1] == {"model": "gpt-4o-mini", "prompt": "def add(a, b):", "suffix": "\n", "max_tokens": 9}
    [row] = thrifty.rows()
    assert row["output_tokens"] == 4 and row["input_tokens"] == 4 and not row["usage_estimated"]
    assert row["cost_pico"] == 4 * 150_000 + 4 * 600_000


async def test_streamed_completion_hides_usage_unless_asked(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    stream = await client(thrifty).completions.create(model="gpt-test", prompt="one two", stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " echo: one two"
    assert all(c.usage is None for c in chunks)
    assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}
    [row] = thrifty.rows()
    assert row["stream"] and row["output_tokens"] == 3 and not row["usage_estimated"] and row["outcome"] == "ok"


async def test_cut_stream_is_partial_and_estimated(thrifty: RunningGateway) -> None:
    stream = await client(thrifty).completions.create(model="gpt-test", prompt="a b c d e f [cut]", stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    [row] = thrifty.rows()
    assert row["outcome"] == "partial" and row["usage_estimated"] and row["output_tokens"] > 0


async def test_a_stream_that_breaks_inside_thrifty_ends_with_an_error_event_and_a_row(
    thrifty: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever raises while a completion streams (here the event parser, after one event), the
    # client gets the protocol's error event and the ledger its row, as chat and responses do.
    real = completions_server.sse_events

    async def one_then_a_bug(resp: Any) -> AsyncIterator[Any]:
        async for ev in real(resp):
            yield ev
            raise ValueError("a bug")

    monkeypatch.setattr(completions_server, "sse_events", one_then_a_bug)
    stream = await client(thrifty).completions.create(model="gpt-test", prompt="one two", stream=True)
    with pytest.raises(openai.APIError, match=r"thrifty failed while streaming \(ValueError\)"):
        async for _ in stream:
            pass
    [row] = thrifty.rows()
    assert (row["status"], row["outcome"]) == (500, "error") and row["usage_estimated"]


async def test_a_model_without_text_completions_is_refused_by_name(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    with pytest.raises(openai.BadRequestError, match="'claude-test' .* has no legacy text completions"):
        await client(thrifty).completions.create(model="claude-test", prompt="hi")
    assert upstream.calls["anthropic"] == 0


async def test_the_exact_cache_answers_a_repeat_whole_or_streamed(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, "cache: {enabled: true}\n"))
    c = client(gw)
    first = await c.completions.create(model="gpt-test", prompt="def add(a, b):", temperature=0)
    again = await c.completions.create(model="gpt-test", prompt="def add(a, b):", temperature=0)
    stream = await c.completions.create(model="gpt-test", prompt="def add(a, b):", temperature=0, stream=True,
                                        stream_options={"include_usage": True})
    chunks = [ch async for ch in stream]
    assert first.choices[0].text == again.choices[0].text == "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == first.usage.completion_tokens  # type: ignore[union-attr]
    assert upstream.calls["completions"] == 1
    # a streamed answer is stored too, and a chat request of the same text is another key
    s2 = await c.completions.create(model="gpt-test", prompt="streamed first", temperature=0, stream=True)
    streamed = "".join([ch.choices[0].text async for ch in s2 if ch.choices])
    whole = await c.completions.create(model="gpt-test", prompt="streamed first", temperature=0)
    assert whole.choices[0].text == streamed and upstream.calls["completions"] == 2
    rows = gw.rows()
    assert [r["answered_by"] for r in rows] == [None, "cache", "cache", None, "cache"]
    assert [r["cost_pico"] == 0 for r in rows] == [False, True, True, False, True]


async def test_dedup_sends_identical_concurrent_completions_once(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, "dedup: {enabled: true}\n"))
    c = client(gw)
    outs = await asyncio.gather(*[c.completions.create(model="gpt-test", prompt="busy [slow 300]", temperature=0)
                                  for _ in range(3)])
    assert {o.choices[0].text for o in outs} == {" echo: busy"}
    assert upstream.calls["completions"] == 1
    rows = gw.rows()
    assert sorted(r["answered_by"] or "" for r in rows) == ["", "dedup", "dedup"]
    assert sum(1 for r in rows if r["cost_pico"] > 0) == 1
