"""Legacy `/v1/completions` through the official SDK: relayed to an OpenAI-compatible
model, streamed or not, billed once; refused by name for a model that has none."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import RunningGateway
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


async def test_a_model_without_text_completions_is_refused_by_name(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    with pytest.raises(openai.BadRequestError, match="'claude-test' .* has no legacy text completions"):
        await client(thrifty).completions.create(model="claude-test", prompt="hi")
    assert upstream.calls["anthropic"] == 0
