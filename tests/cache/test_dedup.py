"""In-flight dedup within one process: identical concurrent requests make one upstream call."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from thrifty.cache.dedup import DedupStage
from thrifty.providers.base import UpstreamError
from thrifty.types import Answerer, Context, Reply, Usage

from .exact_helpers import COST, FakeUpstream, answer_for, gateway, openai_ctx, read_reply

CONFIG = "dedup: {enabled: true}\n"


def stage() -> DedupStage:
    built = DedupStage.build(gateway(CONFIG))
    assert built is not None
    return built


async def test_fifty_identical_requests_make_one_call() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.1)
    ctxs = [openai_ctx(dedup.gateway) for _ in range(50)]
    replies = await asyncio.gather(*(dedup.handle(c, upstream) for c in ctxs))
    assert upstream.calls == 1
    texts = [(await read_reply(r))[0] for r in replies]
    assert texts == [answer_for("default", "what is the answer?")] * 50
    # one bill: exactly one reply carries the cost and usage, the other 49 record a dedup saving
    billed = [r for r in replies if r.cost]
    assert len(billed) == 1 and billed[0].cost == COST and billed[0].usage.output_tokens == 7
    followers = [c for c, r in zip(ctxs, replies, strict=True) if not r.cost]
    assert len(followers) == 49
    assert all(c.savings == {"dedup": COST} and c.answered_by == Answerer.DEDUP for c in followers)
    assert all(r.usage == Usage() for r in replies if not r.cost)
    assert dedup.stats() == {"upstream_calls": 1, "shared": 49, "in_flight": 0}


async def test_a_later_levers_saving_is_recorded_once_on_each_request() -> None:
    """A router behind dedup saved on the call: the caller records it once (not again when it
    settles), and each follower records it beside the dedup saving."""
    dedup, upstream = stage(), FakeUpstream(delay=0.05)

    async def routed(ctx: Context) -> Reply:
        ctx.save("route", Decimal("0.5"))
        return await upstream(ctx)

    ctxs = [openai_ctx(dedup.gateway) for _ in range(3)]
    replies = await asyncio.gather(*(dedup.handle(c, routed) for c in ctxs))
    assert upstream.calls == 1
    savings = sorted((c.savings for c in ctxs), key=len)
    assert savings == [{"route": Decimal("0.5")}] + [{"route": Decimal("0.5"), "dedup": COST}] * 2
    assert sum(r.cost for r in replies) == COST


async def test_fifty_identical_streams_fan_out() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05, chunk_delay=0.01)
    ctxs = [openai_ctx(dedup.gateway, stream=True) for _ in range(50)]

    async def one(i: int) -> tuple[str, int, Decimal]:
        await asyncio.sleep(0.002 * i)  # late joiners must still get the chunks they missed
        reply = await dedup.handle(ctxs[i], upstream)
        text, events = await read_reply(reply)
        assert reply.stream is not None and reply.stream.complete and reply.stream.error is None
        assert events[-1].data == "[DONE]"
        return text, reply.stream.usage.output_tokens, reply.cost

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert upstream.calls == 1
    assert {r[0] for r in results} == {answer_for("default", "what is the answer?")}
    assert sorted(r[1] for r in results) == [0] * 49 + [7]
    assert sorted(r[2] for r in results) == [Decimal(0)] * 49 + [COST]
    assert sum(1 for c in ctxs if c.savings.get("dedup") == COST) == 49


async def test_streaming_and_whole_requests_do_not_share() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05)
    whole = openai_ctx(dedup.gateway)
    streamed = openai_ctx(dedup.gateway, stream=True)
    replies = await asyncio.gather(dedup.handle(whole, upstream), dedup.handle(streamed, upstream))
    assert upstream.calls == 2
    assert replies[0].body is not None and replies[1].stream is not None
    await read_reply(replies[1])


async def test_different_tenants_do_not_share() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05)
    a = [openai_ctx(dedup.gateway, tenant="a") for _ in range(3)]
    b = [openai_ctx(dedup.gateway, tenant="b") for _ in range(3)]
    replies = await asyncio.gather(*(dedup.handle(c, upstream) for c in a + b))
    assert upstream.calls == 2
    texts = [(await read_reply(r))[0] for r in replies]
    assert texts == [answer_for("a", "what is the answer?")] * 3 + [answer_for("b", "what is the answer?")] * 3


async def test_sampled_requests_are_not_shared_by_default() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05)
    ctxs = [openai_ctx(dedup.gateway, temperature=0.7) for _ in range(3)]
    await asyncio.gather(*(dedup.handle(c, upstream) for c in ctxs))
    assert upstream.calls == 3


async def test_transient_failure_is_not_shared_followers_retry_once() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05, fail_status=503, fail_times=1)
    ctxs = [openai_ctx(dedup.gateway) for _ in range(10)]
    replies = await asyncio.gather(*(dedup.handle(c, upstream) for c in ctxs))
    # the leader gets its 503; the nine followers contend again and share one retry
    assert upstream.calls == 2
    assert sorted(r.status for r in replies) == [200] * 9 + [503]
    assert sum(1 for r in replies if r.cost) == 1


async def test_leader_exception_reaches_leader_followers_retry() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05, raise_status=500, fail_times=1)
    ctxs = [openai_ctx(dedup.gateway) for _ in range(5)]
    results = await asyncio.gather(*(dedup.handle(c, upstream) for c in ctxs), return_exceptions=True)
    assert upstream.calls == 2
    assert sum(isinstance(r, UpstreamError) for r in results) == 1
    assert sum(not isinstance(r, BaseException) and r.status == 200 for r in results) == 4


async def test_client_error_is_shared() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.05, raise_status=400)
    ctxs = [openai_ctx(dedup.gateway) for _ in range(5)]
    results = await asyncio.gather(*(dedup.handle(c, upstream) for c in ctxs), return_exceptions=True)
    assert upstream.calls == 1
    assert all(isinstance(r, UpstreamError) and r.status == 400 for r in results)


async def test_stream_cut_midway_ends_every_stream_with_the_error() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.02, cut_after=3, chunk_delay=0.01)
    ctxs = [openai_ctx(dedup.gateway, stream=True) for _ in range(5)]
    replies = await asyncio.gather(*(dedup.handle(c, upstream) for c in ctxs))
    for reply in replies:
        await read_reply(reply)
        assert reply.stream is not None and not reply.stream.complete
        assert reply.stream.error == "upstream connection reset"
    assert upstream.calls == 1
    assert not any("dedup" in c.savings for c in ctxs)


async def test_leader_leaving_keeps_the_call_for_followers_and_hands_them_the_bill() -> None:
    dedup, upstream = stage(), FakeUpstream(delay=0.2)
    leader = asyncio.create_task(dedup.handle(openai_ctx(dedup.gateway), upstream))
    await asyncio.sleep(0.02)
    followers = [openai_ctx(dedup.gateway) for _ in range(3)]
    tasks = [asyncio.create_task(dedup.handle(c, upstream)) for c in followers]
    await asyncio.sleep(0.02)
    leader.cancel()
    replies = await asyncio.gather(*tasks)
    assert upstream.calls == 1
    assert [r.status for r in replies] == [200] * 3
    assert sorted(r.cost for r in replies) == [Decimal(0), Decimal(0), COST]


async def test_everybody_leaving_cancels_the_call() -> None:
    dedup = stage()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(ctx: Context) -> Reply:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Reply()

    task = asyncio.create_task(dedup.handle(openai_ctx(dedup.gateway), slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 1)
    assert dedup.flights == {}


def test_off_unless_configured() -> None:
    assert DedupStage.build(gateway("")) is None
    assert DedupStage.build(gateway("dedup: {enabled: false}\n")) is None
    assert DedupStage.build(gateway("routes: {chat: {dedup: {enabled: true}}}\n")) is not None
