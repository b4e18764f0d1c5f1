"""`reading`: how every provider's stream ends -- cut, failed, complete or abandoned, the
response is released and the stream says which."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from thrifty.providers.transport import STREAM_CUT, reading
from thrifty.types import EventStream, SSEEvent


class Body:
    """Stands in for an aiohttp response: only `release` is used."""

    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


async def nothing() -> AsyncIterator[SSEEvent]:
    return
    yield  # an async generator with no events


async def relay(resp: Body, stream: EventStream, events: list[Any], end: str) -> AsyncIterator[SSEEvent]:
    async with reading(resp, stream, "m"):  # type: ignore[arg-type]
        for data in events:
            yield SSEEvent(data=data)
        if end == "complete":
            stream.complete = True
        elif end == "error":
            stream.error = "the upstream said no"
        elif end == "connection":
            raise aiohttp.ClientPayloadError("cut")
        elif end == "timeout":
            raise TimeoutError


@pytest.mark.parametrize(
    ("end", "error"),
    [
        ("complete", None),
        ("cut", STREAM_CUT),
        ("error", "the upstream said no"),  # an error the upstream sent is kept, not overwritten
        ("connection", "m upstream closed the connection before its answer was complete"),
        ("timeout", "m upstream did not answer in time"),
    ],
)
async def test_every_ending_is_recorded_and_the_response_released(end: str, error: str | None) -> None:
    resp, stream = Body(), EventStream(nothing())
    got = [ev.data async for ev in relay(resp, stream, [1, 2], end)]
    assert got == [1, 2] and stream.error == error and resp.released == 1


async def test_a_client_that_goes_away_releases_the_response_without_calling_it_cut() -> None:
    resp, stream = Body(), EventStream(nothing())
    events = relay(resp, stream, [1, 2, 3], "complete")
    assert (await events.__anext__()).data == 1
    await events.aclose()
    assert resp.released == 1 and stream.error is None and not stream.complete
