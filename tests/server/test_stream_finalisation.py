"""How a stream ends decides what the breaker learns: a reader that stops (cancelled, or
closing early) says nothing about the upstream's health; only the upstream's own failure does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import mock_config
from tests.server.fault_upstream import FaultUpstream
from tests.server.test_faults import fault, fault_models  # noqa: F401  (the fixture)
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.pipeline.dispatch import Dispatcher
from thrifty.testing.mock_upstream import MockUpstream
from thrifty.types import Context, EventStream, SSEEvent


async def test_a_cancelled_reader_is_not_an_upstream_error() -> None:
    async def forever() -> AsyncIterator[SSEEvent]:
        yield SSEEvent(data={"a": 1})
        await asyncio.sleep(3600)
        yield SSEEvent(data={"a": 2})

    stream = EventStream(forever())
    finished: list[EventStream] = []
    stream.on_finish(finished.append)

    async def read() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.error is None and not stream.complete
    assert finished == [stream]  # the callbacks ran once all the same


@pytest.fixture
async def dispatcher(upstream: MockUpstream, fault: FaultUpstream, tmp_path: Path,  # noqa: F811
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dispatcher]:
    monkeypatch.setenv("FAULT_KEY", "sk-x")
    gateway = Gateway(parse_config(mock_config(upstream, tmp_path) + fault_models(fault, breaker_failures=1)))
    await gateway.start(ledger=False)
    yield gateway.dispatcher
    await gateway.close()


async def test_cancelling_a_stream_mid_read_leaves_the_breaker_closed(dispatcher: Dispatcher, fault: FaultUpstream) -> None:  # noqa: F811
    ctx = Context(protocol="openai", body={"model": "f-openai", "stream": True,
                                           "messages": [{"role": "user", "content": "drip"}]},
                  config=dispatcher.gateway.config, requested_model="f-openai")
    reply = await dispatcher(ctx)
    assert reply.stream is not None
    stream = reply.stream

    async def read() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    breaker = dispatcher.breakers["f-openai"]
    assert breaker.state == "closed" and breaker.consecutive == 0
    assert reply.usage.output_tokens > 0  # what was read is still billed (estimated)
    for _ in range(50):
        if fault.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fault.disconnects == 1  # and the upstream connection was let go


async def test_a_failing_on_finish_callback_does_not_skip_the_others() -> None:
    async def two() -> AsyncIterator[SSEEvent]:
        yield SSEEvent(data={"a": 1})
        yield SSEEvent(data={"a": 2})

    stream = EventStream(two())
    ran: list[str] = []

    def broken(_s: EventStream) -> None:
        ran.append("broken")
        raise KeyError("a lever's bug")

    async def billing(_s: EventStream) -> None:
        ran.append("billing")

    stream.on_finish(broken)
    stream.on_finish(billing)
    assert [ev.data async for ev in stream] == [{"a": 1}, {"a": 2}]
    assert ran == ["broken", "billing"]
