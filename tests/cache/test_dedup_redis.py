"""Dedup across replicas through the real Redis: two stage instances stand for two replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from thrifty.cache.dedup import DedupStage
from thrifty.cache.key import context_key
from thrifty.providers.base import UpstreamError

from .exact_helpers import COST, FakeUpstream, answer_for, gateway, openai_ctx, read_reply

REDIS = "redis://127.0.0.1:6379/0"
ANSWER = answer_for("default", "what is the answer?")


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[DedupStage, DedupStage, str]]:
    prefix = f"thrifty-test:{uuid.uuid4().hex}:"
    config = f"dedup: {{redis: '{REDIS}', prefix: '{prefix}', lock_ttl: 0.6, poll: 0.1, redis_budget_ms: 3000}}\n"
    a, b = DedupStage.build(gateway(config)), DedupStage.build(gateway(config))
    assert a is not None and b is not None
    yield a, b, prefix
    client = aioredis.from_url(REDIS)
    names = [n async for n in client.scan_iter(match=f"{prefix}*")]
    if names:
        await client.delete(*names)
    await client.aclose()
    await a.aclose()
    await b.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_fifty_requests_over_two_replicas_make_one_call(
    replicas: tuple[DedupStage, DedupStage, str], stream: bool
) -> None:
    a, b, _ = replicas
    upstream_a = FakeUpstream(delay=0.15, chunk_delay=0.01)
    upstream_b = FakeUpstream(delay=0.15, chunk_delay=0.01)

    async def one(i: int) -> tuple[str, Decimal, Decimal]:
        stage, upstream = (a, upstream_a) if i % 2 == 0 else (b, upstream_b)
        await asyncio.sleep(0.002 * i)
        ctx = openai_ctx(stage.gateway, stream=stream)
        reply = await stage.handle(ctx, upstream)
        text, _ = await read_reply(reply)
        if reply.stream is not None:
            assert reply.stream.complete, reply.stream.error
        return text, reply.cost, ctx.savings.get("dedup", Decimal(0))

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert upstream_a.calls + upstream_b.calls == 1
    assert [r[0] for r in results] == [ANSWER] * 50
    assert sorted(r[1] for r in results) == [Decimal(0)] * 49 + [COST]  # one bill
    assert sum(r[2] for r in results) == 49 * COST


async def test_a_follower_falls_back_when_the_leader_dies(replicas: tuple[DedupStage, DedupStage, str]) -> None:
    a, _, prefix = replicas
    ctx = openai_ctx(a.gateway)
    key = context_key(ctx, extra={"stream": False, "stream_options": None})
    client = aioredis.from_url(REDIS)
    # a leader on another replica took the lock, then its process died: nothing is ever published
    await client.set(f"{prefix}lock:{key}", "dead-replica", px=600)
    upstream = FakeUpstream(delay=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await a.handle(ctx, upstream)
    waited = loop.time() - started
    await client.aclose()
    assert reply.status == 200 and (await read_reply(reply))[0] == ANSWER
    assert upstream.calls == 1 and reply.cost == COST and "dedup" not in ctx.savings
    # no leader showed it is alive (its "start" entry) within ghost_grace: the lock is a ghost
    assert waited < 1.0


async def test_leader_failure_makes_the_other_replica_call_itself(
    replicas: tuple[DedupStage, DedupStage, str],
) -> None:
    a, b, _ = replicas
    failing, healthy = FakeUpstream(delay=0.2, fail_status=503), FakeUpstream(delay=0)
    leader = asyncio.create_task(a.handle(openai_ctx(a.gateway), failing))
    await asyncio.sleep(0.05)
    follower_ctx = openai_ctx(b.gateway)
    follower = await b.handle(follower_ctx, healthy)
    assert (await leader).status == 503
    assert follower.status == 200 and healthy.calls == 1 and follower.cost == COST


async def test_a_client_error_is_shared_across_replicas(replicas: tuple[DedupStage, DedupStage, str]) -> None:
    a, b, _ = replicas
    bad_a, bad_b = FakeUpstream(delay=0.2, raise_status=400), FakeUpstream(delay=0.2, raise_status=400)
    leader = asyncio.create_task(a.handle(openai_ctx(a.gateway), bad_a))
    await asyncio.sleep(0.05)
    with pytest.raises(UpstreamError) as caught:
        await b.handle(openai_ctx(b.gateway), bad_b)
    assert caught.value.status == 400
    with pytest.raises(UpstreamError):
        await leader
    assert bad_a.calls + bad_b.calls == 1


async def test_a_slow_leader_keeps_its_lock(replicas: tuple[DedupStage, DedupStage, str]) -> None:
    a, b, _ = replicas
    slow_a, slow_b = FakeUpstream(delay=1.0), FakeUpstream(delay=1.0)  # longer than lock_ttl (0.6 s)
    leader = asyncio.create_task(a.handle(openai_ctx(a.gateway), slow_a))
    await asyncio.sleep(0.05)
    follower_ctx = openai_ctx(b.gateway)
    follower = await b.handle(follower_ctx, slow_b)
    await leader
    assert follower.status == 200 and slow_a.calls == 1 and slow_b.calls == 0
    assert follower_ctx.savings == {"dedup": COST}
