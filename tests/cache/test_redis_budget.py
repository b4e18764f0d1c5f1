"""Redis trouble never stalls a request: a private Redis server, paused and stopped on purpose."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from thrifty.cache.dedup import DedupStage
from thrifty.cache.redis_budget import RedisBudget, start_request
from thrifty.health import DEGRADED, READY, DependencyUnavailable
from thrifty.testing.services import PrivateRedis

from .exact_helpers import FakeUpstream, gateway, openai_ctx, read_reply

pytestmark = pytest.mark.skipif(not PrivateRedis.available(), reason="needs redis-server")


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    s = PrivateRedis().start()
    yield s
    s.close()


async def test_a_paused_redis_costs_one_budget_then_nothing(server: PrivateRedis) -> None:
    budget = RedisBudget(server.url, budget_ms=100, failures=3, cooldown=60)
    assert await budget.run("ping")
    server.pause()
    try:
        spent = []
        for _ in range(10):
            start_request()
            t = time.monotonic()
            with pytest.raises(DependencyUnavailable):
                await budget.run("get", "k")
            spent.append(time.monotonic() - t)
        assert max(spent[:3]) < 0.5  # each one the budget, not redis-py's 5 s
        assert max(spent[3:]) < 0.01  # the breaker is open: no network at all
        assert budget.refused == 7 and budget.health.state == DEGRADED
    finally:
        server.resume()
    await budget.aclose()


async def test_one_request_shares_one_deadline_between_its_calls(server: PrivateRedis) -> None:
    budget = RedisBudget(server.url, budget_ms=150, failures=100)
    assert await budget.run("ping")
    server.pause()
    try:
        start_request()
        t = time.monotonic()
        for _ in range(3):  # say: a cache lookup, a dedup lock, a lock read
            with pytest.raises(DependencyUnavailable):
                await budget.run("get", "k")
        assert time.monotonic() - t < 0.4  # one budget in all, not three
    finally:
        server.resume()
    await budget.aclose()


async def test_a_lock_set_while_redis_stalled_does_not_hold_the_next_request(server: PrivateRedis) -> None:
    """The ghost lock: the SET NX times out in thrifty but runs when Redis wakes up."""
    prefix = "ghost:"
    config = f"dedup: {{redis: '{server.url}', prefix: '{prefix}', redis_budget_ms: 100}}\n"
    stage = DedupStage.build(gateway(config))
    assert stage is not None
    up = FakeUpstream(delay=0.01)
    # warm the connection, then stall Redis under a request
    text, _ = await read_reply(await stage.handle(openai_ctx(stage.gateway, "warm"), up))
    server.pause()
    t = time.monotonic()
    start_request()
    reply = await stage.handle(openai_ctx(stage.gateway, "q"), up)
    await read_reply(reply)
    assert time.monotonic() - t < 0.5, "the request waited on the stalled Redis"
    assert stage._cleanups, "the timed-out lock has a clean-up waiting for Redis"
    await asyncio.sleep(0.5)
    server.resume()
    await asyncio.sleep(0.8)  # Redis runs the queued SET; the flight's clean-up deletes it
    client = aioredis.from_url(server.url)
    assert [k async for k in client.scan_iter(match=f"{prefix}lock:*")] == []
    await client.aclose()
    # the same request again, with Redis healthy: no wait on a lock
    stage.redis(server.url).breaker.success()
    t = time.monotonic()
    start_request()
    await read_reply(await stage.handle(openai_ctx(stage.gateway, "q"), up))
    assert time.monotonic() - t < 0.5
    await stage.aclose()


async def test_a_redis_outage_writes_a_few_log_lines_not_one_per_request(
    server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    config = f"dedup: {{redis: '{server.url}', prefix: 'outage:'}}\n"
    stage = DedupStage.build(gateway(config))
    assert stage is not None
    up = FakeUpstream(delay=0.0)
    await read_reply(await stage.handle(openai_ctx(stage.gateway, "warm"), up))
    server.stop()
    caplog.set_level(logging.INFO)
    caplog.clear()
    for i in range(200):
        start_request()
        await read_reply(await stage.handle(openai_ctx(stage.gateway, f"q{i}"), up))
    assert up.calls == 201  # every request served, without Redis
    lines = [r for r in caplog.records if r.name.startswith("thrifty")]
    assert 1 <= len(lines) <= 3, [r.getMessage() for r in lines]
    assert all(r.exc_info is None for r in lines)
    server.start()
    budget = stage.redis(server.url)
    budget.breaker.opened_at = 0.0  # the cooldown is over: the next call is the trial
    start_request()
    await read_reply(await stage.handle(openai_ctx(stage.gateway, "back"), up))
    assert budget.health.state == READY
    await stage.aclose()


async def test_a_follower_waits_at_most_the_upstream_timeout_plus_the_margin(server: PrivateRedis) -> None:
    """A live leader (its lock refreshed, its "start" published) that never finishes."""
    prefix = "stuck:"
    config = (f"models:\n  - {{name: gpt-test, provider: openai, base_url: 'http://127.0.0.1:9/v1', timeout: 0.5}}\n"
              f"dedup: {{redis: '{server.url}', prefix: '{prefix}', follow_margin: 0.3, poll: 0.1, redis_budget_ms: 500}}\n")
    stage = DedupStage.build(gateway(config))
    assert stage is not None
    ctx = openai_ctx(stage.gateway)
    from thrifty.cache.key import context_key

    key = context_key(ctx, extra={"stream": False, "stream_options": None})
    client = aioredis.from_url(server.url)
    await client.set(f"{prefix}lock:{key}", "stuck-leader", px=60_000)
    await client.xadd(f"{prefix}s:stuck-leader", {"t": "start", "d": "{}"})
    up = FakeUpstream(delay=0)
    # connect first: on a loaded machine a fresh server's first connect can pass the 0.25 s
    # connect timeout, and then the follower rightly skips Redis; that is not this test's case
    await stage.redis(server.url, 500).run("ping", timeout=5)
    t = time.monotonic()
    start_request()
    reply = await stage.handle(ctx, up)
    waited = time.monotonic() - t
    await read_reply(reply)
    assert up.calls == 1 and reply.status == 200
    assert 0.7 <= waited < 2.0, waited  # 0.5 s upstream timeout + 0.3 s margin, then its own call
    await client.aclose()
    await stage.aclose()
