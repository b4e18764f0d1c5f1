"""The exact cache stage: what it serves, what it stores, and what it never does."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.cache.dedup import DedupStage
from thrifty.cache.exact import ExactCacheStage, cache_control
from thrifty.cache.key import context_key
from thrifty.pipeline.pipeline import Pipeline
from thrifty.protocol.anthropic import collect_anthropic
from thrifty.protocol.openai import collect_openai
from thrifty.types import Answerer, Usage

from .exact_helpers import (
    COST,
    FakeUpstream,
    answer_for,
    anthropic_ctx,
    gateway,
    openai_ctx,
    read_reply,
)

ANSWER = answer_for("default", "what is the answer?")


def stage(tmp_path: Path, extra: str = "") -> ExactCacheStage:
    built = ExactCacheStage.build(gateway(f"store: sqlite:///{tmp_path}/ledger.db\ncache: {{enabled: true}}\n{extra}"))
    assert built is not None
    return built


async def test_second_identical_request_is_a_hit_billed_zero(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    first = openai_ctx(cache.gateway)
    reply = await cache.handle(first, upstream)
    assert first.cache_outcome == "miss" and reply.cost == COST
    second = openai_ctx(cache.gateway, user="someone-else", metadata={"trace": "x"})  # bookkeeping differs
    hit = await cache.handle(second, upstream)
    assert upstream.calls == 1
    assert second.cache_outcome == "hit"
    assert hit.body == reply.body and hit.usage == Usage() and hit.cost == 0
    assert second.savings == {"cache": COST} and second.answered_by == Answerer.CACHE
    assert second.tokens_saved == {"cache": 17}
    # the file next to the ledger holds it
    assert (tmp_path / "ledger.cache.db").exists()


async def test_a_whole_answer_is_replayed_as_a_stream_sdks_accept(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    whole = await cache.handle(openai_ctx(cache.gateway), upstream)
    ctx = openai_ctx(cache.gateway, stream=True)
    reply = await cache.handle(ctx, upstream)
    text, events = await read_reply(reply)
    assert upstream.calls == 1 and ctx.cache_outcome == "hit"
    assert text == ANSWER
    assert reply.stream is not None and reply.stream.complete
    assert events[-1].data == "[DONE]"
    usage_chunks = [e.data for e in events if isinstance(e.data, dict) and e.data.get("usage")]
    assert usage_chunks and usage_chunks[0]["usage"] == whole.body["usage"]  # type: ignore[index]
    rebuilt = collect_openai(events)
    assert rebuilt["choices"][0]["message"]["content"] == ANSWER and rebuilt["choices"][0]["finish_reason"] == "stop"


async def test_a_stream_is_stored_as_it_passes_and_served_whole(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    ctx = openai_ctx(cache.gateway, stream=True, include_usage=False)
    live_text, _ = await read_reply(await cache.handle(ctx, upstream))
    assert live_text == ANSWER and ctx.cache_outcome == "miss"
    hit_ctx = openai_ctx(cache.gateway)
    hit = await cache.handle(hit_ctx, upstream)
    assert upstream.calls == 1 and hit_ctx.cache_outcome == "hit"
    assert hit.body is not None and hit.body["choices"][0]["message"]["content"] == ANSWER
    # the live stream carried no usage chunk, yet the stored body has usage from the stream's counts
    assert hit.body["usage"]["completion_tokens"] == 7 and hit_ctx.savings == {"cache": COST}


async def test_anthropic_stream_round_trip(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    await read_reply(await cache.handle(anthropic_ctx(cache.gateway, stream=True), upstream))
    ctx = anthropic_ctx(cache.gateway, stream=True)
    reply = await cache.handle(ctx, upstream)
    text, events = await read_reply(reply)
    assert upstream.calls == 1 and ctx.cache_outcome == "hit" and text == ANSWER
    assert [e.data["type"] for e in events][0] == "message_start"  # type: ignore[index]
    assert collect_anthropic(events)["usage"]["output_tokens"] == 7
    # an OpenAI request with the same words is a different key (other protocol)
    assert context_key(openai_ctx(cache.gateway)) != context_key(anthropic_ctx(cache.gateway))


async def test_tenant_a_never_gets_tenant_b_answer(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    a = await cache.handle(openai_ctx(cache.gateway, tenant="a"), upstream)
    b_ctx = openai_ctx(cache.gateway, tenant="b")
    b = await cache.handle(b_ctx, upstream)
    assert upstream.calls == 2 and b_ctx.cache_outcome == "miss"
    assert (await read_reply(a))[0] == answer_for("a", "what is the answer?")
    assert (await read_reply(b))[0] == answer_for("b", "what is the answer?")
    again = await cache.handle(openai_ctx(cache.gateway, tenant="b"), upstream)
    assert (await read_reply(again))[0] == answer_for("b", "what is the answer?") and upstream.calls == 2


async def test_upstream_errors_are_never_stored(tmp_path: Path) -> None:
    cache, failing = stage(tmp_path), FakeUpstream(delay=0, fail_status=503)
    assert (await cache.handle(openai_ctx(cache.gateway), failing)).status == 503
    ok = FakeUpstream(delay=0)
    ctx = openai_ctx(cache.gateway)
    reply = await cache.handle(ctx, ok)
    assert ok.calls == 1 and ctx.cache_outcome == "miss" and reply.status == 200


async def test_a_stream_cut_midway_is_not_stored(tmp_path: Path) -> None:
    cache, cut = stage(tmp_path), FakeUpstream(delay=0, cut_after=4)
    reply = await cache.handle(openai_ctx(cache.gateway, stream=True), cut)
    await read_reply(reply)
    assert reply.stream is not None and not reply.stream.complete and reply.stream.error
    ok = FakeUpstream(delay=0)
    ctx = openai_ctx(cache.gateway, stream=True)
    await read_reply(await cache.handle(ctx, ok))
    assert ok.calls == 1 and ctx.cache_outcome == "miss"


async def test_a_stream_the_client_abandons_is_not_stored(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    reply = await cache.handle(openai_ctx(cache.gateway, stream=True), upstream)
    assert reply.stream is not None
    iterator = reply.stream.__aiter__()
    await iterator.__anext__()
    await iterator.aclose()  # the client went away after one chunk
    ctx = openai_ctx(cache.gateway)
    await cache.handle(ctx, upstream)
    assert ctx.cache_outcome == "miss" and upstream.calls == 2


async def test_only_deterministic_requests_by_default(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    for _ in range(2):
        ctx = openai_ctx(cache.gateway, temperature=0.8)
        await cache.handle(ctx, upstream)
        assert ctx.cache_outcome == "bypass"
    assert upstream.calls == 2
    for _ in range(2):  # a seed makes a sampled request repeatable
        await cache.handle(openai_ctx(cache.gateway, temperature=0.8, seed=7), upstream)
    assert upstream.calls == 3
    for _ in range(2):  # no temperature means the provider default, which samples
        await cache.handle(openai_ctx(cache.gateway, temperature=None), upstream)
    assert upstream.calls == 5


async def test_a_route_can_cache_sampled_requests_or_turn_the_cache_off(tmp_path: Path) -> None:
    cache = stage(
        tmp_path,
        "routes:\n  faq: {cache: {deterministic_only: false}}\n  live: {cache: {enabled: false}}\n",
    )
    upstream = FakeUpstream(delay=0)
    pipeline = Pipeline([cache], upstream, cache.gateway.overrides)  # the pipeline skips a lever that is off
    for _ in range(2):
        await pipeline(openai_ctx(cache.gateway, temperature=0.8, tags={"route": "faq"}))
    assert upstream.calls == 1
    for _ in range(2):
        ctx = openai_ctx(cache.gateway, tags={"route": "live"})
        await pipeline(ctx)
        assert ctx.cache_outcome is None
    assert upstream.calls == 3


async def test_cache_control_headers(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    no_store = openai_ctx(cache.gateway, headers={"cache-control": "no-store"})
    await cache.handle(no_store, upstream)
    assert no_store.cache_outcome == "bypass"
    probe = openai_ctx(cache.gateway)
    await cache.handle(probe, upstream)
    assert probe.cache_outcome == "miss" and upstream.calls == 2  # no-store wrote nothing
    no_cache = openai_ctx(cache.gateway, headers={"Cache-Control": "no-cache"})
    await cache.handle(no_cache, upstream)
    assert no_cache.cache_outcome == "bypass" and upstream.calls == 3  # did not read
    hit = openai_ctx(cache.gateway)
    await cache.handle(hit, upstream)
    assert hit.cache_outcome == "hit" and upstream.calls == 3
    await asyncio.sleep(0.05)
    stale = openai_ctx(cache.gateway, headers={"cache-control": "max-age=0"})
    await cache.handle(stale, upstream)
    assert stale.cache_outcome == "miss" and upstream.calls == 4
    assert cache_control({"cache-control": 'No-Cache, max-age="60"'}) == {"no-cache": None, "max-age": "60"}


async def test_ttl_expiry(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path, "routes: {short: {cache: {ttl: 0.2}}}\n"), FakeUpstream(delay=0)
    for _ in range(2):
        await cache.handle(openai_ctx(cache.gateway, tags={"route": "short"}), upstream)
    assert upstream.calls == 1
    await asyncio.sleep(0.3)
    ctx = openai_ctx(cache.gateway, tags={"route": "short"})
    await cache.handle(ctx, upstream)
    assert ctx.cache_outcome == "miss" and upstream.calls == 2


async def test_a_broken_store_degrades_to_misses(tmp_path: Path) -> None:
    cache, upstream = stage(tmp_path), FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway), upstream)
    store = cache.stores.for_settings(cache.settings("default"))
    await store.memory.clear()  # type: ignore[attr-defined]
    await store.close()  # now every disk query fails
    ctx = openai_ctx(cache.gateway)
    reply = await cache.handle(ctx, upstream)
    assert reply.status == 200 and ctx.cache_outcome == "miss" and upstream.calls == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_fifty_concurrent_then_cached_through_cache_and_dedup(tmp_path: Path, stream: bool) -> None:
    gw = gateway(f"store: sqlite:///{tmp_path}/ledger.db\ncache: {{enabled: true}}\ndedup: {{enabled: true}}\n")
    cache, dedup = ExactCacheStage.build(gw), DedupStage.build(gw)
    assert cache is not None and dedup is not None
    upstream = FakeUpstream(delay=0.05, chunk_delay=0.005)
    pipeline = Pipeline([cache, dedup], upstream)
    ctxs = [openai_ctx(gw, stream=stream) for _ in range(50)]
    replies = await asyncio.gather(*(pipeline(c) for c in ctxs))
    texts = [(await read_reply(r))[0] for r in replies]
    assert upstream.calls == 1 and texts == [ANSWER] * 50
    assert sorted(c.cache_outcome or "" for c in ctxs) == ["miss"] * 50
    assert sum((c.savings.get("dedup", Decimal(0)) for c in ctxs), Decimal(0)) == 49 * COST
    assert cache.stored == 1  # the leader stored it; followers did not write it again
    late = openai_ctx(gw, stream=stream)
    await read_reply(await pipeline(late))
    assert late.cache_outcome == "hit" and upstream.calls == 1 and late.savings == {"cache": COST}
