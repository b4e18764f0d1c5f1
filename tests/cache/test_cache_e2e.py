"""End to end: the OpenAI and Anthropic SDKs against `thrifty` in front of the mock upstream.

Proves the two levers where a client sees them: 50 identical concurrent requests cost one
upstream call; a repeat is served from cache with `X-Thrifty-Cache: hit`, whole or streamed;
and the ledger bills one call and attributes the rest to dedup and cache.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import orjson
import pytest
import redis.asyncio as aioredis

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

LEVERS = "cache: {enabled: true}\ndedup: {enabled: true}\n"


@pytest.fixture
async def gateway(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(mock_config(upstream, tmp_path, LEVERS))


def client(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)


def ask(text: str) -> dict[str, object]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], "temperature": 0}


async def test_fifty_concurrent_whole_requests_one_upstream_call_then_a_hit(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    sdk = client(gateway)

    async def one() -> tuple[str, str]:
        raw = await sdk.chat.completions.with_raw_response.create(**ask("ping [slow 300]"))  # type: ignore[call-overload]
        completion = raw.parse()
        return completion.choices[0].message.content, raw.headers["x-thrifty-cache"]

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert upstream.calls["openai"] == 1
    assert results == [("echo: ping", "miss")] * 50
    text, outcome = await one()
    assert (text, outcome) == ("echo: ping", "hit") and upstream.calls["openai"] == 1

    rows = gateway.rows()
    assert len(rows) == 51
    billed = [r for r in rows if Decimal(str(r["cost_usd"])) > 0]
    assert len(billed) == 1
    cost = Decimal(billed[0]["cost_pico"]) / Decimal(10**12)
    assert sorted(r["answered_by"] or "" for r in rows) == [""] + ["cache"] + ["dedup"] * 49
    for row in rows:
        assert Decimal(row["counterfactual_pico"]) == billed[0]["cost_pico"]  # each would have cost the same
        if row["answered_by"]:
            assert row["input_tokens"] == 0 and row["output_tokens"] == 0
    assert cost > 0


async def test_fifty_concurrent_streams_one_upstream_call_then_a_replayed_stream(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    sdk = client(gateway)

    async def one() -> tuple[str, int | None]:
        stream = await sdk.chat.completions.create(
            **ask("stream me [slow 200]"), stream=True, stream_options={"include_usage": True}  # type: ignore[call-overload]
        )
        text, usage = "", None
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
        return text, usage

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert upstream.calls["openai"] == 1
    assert results == [("echo: stream me", 3)] * 50
    replay = await one()
    assert replay == ("echo: stream me", 3) and upstream.calls["openai"] == 1
    # the same question asked whole is served from the stored stream
    whole = await sdk.chat.completions.with_raw_response.create(**ask("stream me [slow 200]"))  # type: ignore[call-overload]
    assert whole.headers["x-thrifty-cache"] == "hit" and whole.parse().choices[0].message.content == "echo: stream me"
    rows = gateway.rows()
    assert sum(1 for r in rows if r["cost_pico"] > 0) == 1
    assert sorted(r["answered_by"] or "" for r in rows).count("cache") == 2


async def test_errors_and_cut_streams_are_not_cached(gateway: RunningGateway, upstream: MockUpstream) -> None:
    sdk = client(gateway)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(**ask("boom [500 always]"))  # type: ignore[call-overload]
    assert upstream.calls["openai"] >= 2
    before = upstream.calls["openai"]
    for _ in range(2):
        with pytest.raises(openai.APIError):
            stream = await sdk.chat.completions.create(**ask("one two three four [cut]"), stream=True)  # type: ignore[call-overload]
            async for _chunk in stream:
                pass
    assert upstream.calls["openai"] == before + 2


async def test_sampled_requests_and_no_store_bypass(gateway: RunningGateway, upstream: MockUpstream) -> None:
    sdk = client(gateway)
    for _ in range(2):
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "poem"}], temperature=0.9
        )
        assert raw.headers["x-thrifty-cache"] == "bypass"
    for _ in range(2):
        raw = await sdk.chat.completions.with_raw_response.create(
            **ask("private"), extra_headers={"Cache-Control": "no-store"}  # type: ignore[call-overload]
        )
        assert raw.headers["x-thrifty-cache"] == "bypass"
    assert upstream.calls["openai"] == 4


async def test_anthropic_sdk_stream_is_replayed_from_cache(gateway: RunningGateway, upstream: MockUpstream) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="unused", max_retries=0)

    async def one() -> tuple[str, int]:
        async with sdk.messages.stream(
            model="claude-test",
            max_tokens=50,
            messages=[{"role": "user", "content": "hello there"}],
            extra_body={"temperature": 0},
        ) as stream:
            message = await stream.get_final_message()
        return "".join(b.text for b in message.content if b.type == "text"), message.usage.output_tokens

    first = await one()
    second = await one()
    assert first == second == ("echo: hello there", 3)
    assert upstream.calls["anthropic"] == 1


async def test_two_replicas_share_one_call_and_one_cache_through_redis(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    prefix = f"thrifty-test:{uuid.uuid4().hex}:"
    # a generous Redis budget: this test is about sharing, on a machine that may be busy
    # (the budget's own tests are in tests/cache/test_redis_budget.py)
    levers = (
        f"cache: {{store: 'redis://127.0.0.1:6379/0', prefix: '{prefix}cache:', redis_budget_ms: 3000}}\n"
        f"dedup: {{redis: 'redis://127.0.0.1:6379/0', prefix: '{prefix}dedup:', redis_budget_ms: 3000}}\n"
    )
    replicas = [
        await start_gateway(mock_config(upstream, tmp_path / name, levers)) for name in ("one", "two")
    ]
    sdks = [client(r) for r in replicas]

    async def one(i: int) -> str:
        completion = await sdks[i % 2].chat.completions.create(**ask("shared [slow 300]"))  # type: ignore[call-overload]
        return str(completion.choices[0].message.content)

    assert await asyncio.gather(*(one(i) for i in range(50))) == ["echo: shared"] * 50
    assert upstream.calls["openai"] == 1
    for sdk in sdks:  # each replica now answers from the shared cache
        raw = await sdk.chat.completions.with_raw_response.create(**ask("shared [slow 300]"))  # type: ignore[call-overload]
        assert raw.headers["x-thrifty-cache"] == "hit"
    assert upstream.calls["openai"] == 1
    rows = replicas[0].rows() + replicas[1].rows()
    assert len(rows) == 52 and sum(1 for r in rows if r["cost_pico"] > 0) == 1
    redis = aioredis.from_url("redis://127.0.0.1:6379/0")
    names = [n async for n in redis.scan_iter(match=f"{prefix}*")]
    if names:
        await redis.delete(*names)
    await redis.aclose()


@pytest.mark.parametrize("wrong", ["garbage", "another key's entry", "another tenant's entry", "not an object"])
async def test_wrong_data_under_a_redis_cache_key_is_a_miss_never_served(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway, wrong: str
) -> None:
    prefix = f"thrifty-test:{uuid.uuid4().hex}:"
    levers = f"cache: {{store: 'redis://127.0.0.1:6379/0', prefix: '{prefix}', redis_budget_ms: 3000}}\n"
    gw = await start_gateway(mock_config(upstream, tmp_path, levers))
    sdk = client(gw)
    redis = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        raw = await sdk.chat.completions.with_raw_response.create(**ask("what is in the box?"))  # type: ignore[call-overload]
        key = raw.headers["x-thrifty-cache-key"]
        other = await sdk.chat.completions.with_raw_response.create(**ask("something else"))  # type: ignore[call-overload]
        stored = orjson.loads(await redis.get(f"{prefix}r:{key}"))
        if wrong == "garbage":
            value = b"\x00\xffnot json"
        elif wrong == "another key's entry":
            value = await redis.get(f"{prefix}r:{other.headers['x-thrifty-cache-key']}")
        elif wrong == "another tenant's entry":
            value = orjson.dumps({**stored, "tenant": "someone-else"})
        else:
            value = orjson.dumps({**stored, "body": ["a", "list"]})
        await redis.set(f"{prefix}r:{key}", value)
        calls = upstream.calls["openai"]
        again = await sdk.chat.completions.with_raw_response.create(**ask("what is in the box?"))  # type: ignore[call-overload]
        assert again.headers["x-thrifty-cache"] == "miss"
        assert again.parse().choices[0].message.content == "echo: what is in the box?"
        assert upstream.calls["openai"] == calls + 1  # asked again, and stored again
        assert gw.gateway.services.cache is not None and gw.gateway.services.cache.unusable == 1
        hit = await sdk.chat.completions.with_raw_response.create(**ask("what is in the box?"))  # type: ignore[call-overload]
        assert hit.headers["x-thrifty-cache"] == "hit"
    finally:
        names = [n async for n in redis.scan_iter(match=f"{prefix}*")]
        if names:
            await redis.delete(*names)
        await redis.aclose()
