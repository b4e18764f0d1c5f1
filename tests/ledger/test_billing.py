"""The ledger's bills, checked against bills computed by hand from the providers' price sheets.

Prices (USD per 1M tokens) come from tests/conftest.py: gpt-test 0.15 in / 0.60 out / 0.075
cached read; claude-test 3 in / 15 out / 0.30 read / 3.75 5-minute write / 6 1-hour write.
"""

from __future__ import annotations

from decimal import Decimal

import anthropic
import httpx
import openai

from tests.conftest import RunningGateway
from thrifty.config import ModelConfig
from thrifty.ledger.prices import Pricer
from thrifty.ledger.record import from_pico
from thrifty.types import Usage

M = Decimal(1_000_000)


def oa(thrifty: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="unused", max_retries=0)


def bill(row: dict) -> Decimal:
    return from_pico(row["cost_pico"])


async def test_plain_openai_bill(thrifty: RunningGateway) -> None:
    await oa(thrifty).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    [row] = thrifty.rows()
    # the mock counts '"hi"' as 4 // 4 + 10 = 11 input tokens; "echo: hi" is 2 output tokens
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (11, 0, 2)
    assert bill(row) == (11 * Decimal("0.15") + 2 * Decimal("0.60")) / M
    assert row["counterfactual_pico"] == row["cost_pico"]  # no lever, nothing saved


async def test_openai_cached_input_is_billed_at_the_cached_rate(thrifty: RunningGateway) -> None:
    await oa(thrifty).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "[cached 8] hi"}]
    )
    [row] = thrifty.rows()
    # 13 prompt tokens of which 8 cached: 5 at 0.15, 8 at 0.075
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (5, 8, 2)
    assert bill(row) == (5 * Decimal("0.15") + 8 * Decimal("0.075") + 2 * Decimal("0.60")) / M


async def test_reasoning_tokens_are_billed_as_output(thrifty: RunningGateway) -> None:
    await oa(thrifty).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "[reason 50] hi"}]
    )
    [row] = thrifty.rows()
    assert row["reasoning_tokens"] == 50 and row["output_tokens"] == 52
    assert bill(row) == (row["input_tokens"] * Decimal("0.15") + 52 * Decimal("0.60")) / M


async def test_anthropic_cache_write_and_read(thrifty: RunningGateway) -> None:
    client = anthropic.AsyncAnthropic(base_url=thrifty.url, api_key="unused", max_retries=0)
    await client.messages.create(
        model="claude-test",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi [cached 40] [write 10] [write1h 20]"}],
    )
    [row] = thrifty.rows()
    assert (row["cache_read_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (40, 10, 20)
    expected = (
        row["input_tokens"] * Decimal(3)
        + 40 * Decimal("0.30")
        + 10 * Decimal("3.75")
        + 20 * Decimal(6)
        + row["output_tokens"] * Decimal(15)
    ) / M
    assert bill(row) == expected


async def test_streaming_with_usage_bills_like_non_streaming(thrifty: RunningGateway) -> None:
    stream = await oa(thrifty).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    [row] = thrifty.rows()
    assert not row["usage_estimated"]
    assert bill(row) == (11 * Decimal("0.15") + 2 * Decimal("0.60")) / M


async def test_a_stream_cut_short_is_billed_on_estimated_usage(thrifty: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(
            thrifty.url + "/v1/chat/completions",
            json={
                "model": "gpt-test",
                "stream": True,
                "messages": [{"role": "user", "content": "[cut] one two three four"}],
            },
        )
    [row] = thrifty.rows()
    assert row["usage_estimated"] and row["outcome"] == "partial"
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert bill(row) == (row["input_tokens"] * Decimal("0.15") + row["output_tokens"] * Decimal("0.60")) / M


def test_catalog_prices_when_config_sets_none() -> None:
    cfg = ModelConfig(name="mini", provider="openai", model="gpt-4o-mini")
    rates = Pricer().rates(cfg)
    assert rates.source.startswith("genai-prices")
    cost = Pricer().cost(cfg, Usage(input_tokens=800, cache_read_tokens=200, output_tokens=100))
    assert cost == (800 * Decimal("0.15") + 200 * Decimal("0.075") + 100 * Decimal("0.6")) / M


def test_anthropic_long_context_tier_and_batch_discount() -> None:
    cfg = ModelConfig(name="sonnet", provider="anthropic", model="claude-sonnet-4-5")
    p = Pricer()
    small = p.cost(cfg, Usage(input_tokens=1000, output_tokens=100))
    assert small == (1000 * Decimal(3) + 100 * Decimal(15)) / M
    big = p.cost(cfg, Usage(input_tokens=250_000, output_tokens=100))
    assert big > 250_000 * Decimal(3) / M  # past 200k tokens every token pays the long-context rate
    assert p.cost(cfg, Usage(input_tokens=1000, output_tokens=100), batch=True) == small / 2
