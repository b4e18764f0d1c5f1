"""Watch a streamed reply go by unchanged, keep its events, and act once it has completed.

The caches store a stream only after it ended normally; this is the one place that knows how
to sit in a stream's path without changing what the client receives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from thrifty.types import EventStream, Reply, SSEEvent

OnComplete = Callable[[list[SSEEvent], EventStream], Awaitable[None]]


class TappedStream(EventStream):
    """An EventStream over another; closing it closes the one underneath too."""

    def __init__(self, events: AsyncIterator[SSEEvent], inner: EventStream) -> None:
        super().__init__(events)
        self.inner = inner

    async def aclose(self) -> None:
        await super().aclose()
        await self.inner.aclose()


def tap(reply: Reply, on_complete: OnComplete) -> None:
    """Replace `reply.stream` with one that passes every event through and, if the stream
    completes without error, calls `on_complete(events, stream)` before it ends."""
    inner = reply.stream
    assert inner is not None
    events: list[SSEEvent] = []

    async def passthrough() -> AsyncIterator[SSEEvent]:
        iterator = inner.__aiter__()
        try:
            async for event in iterator:
                events.append(event)
                yield event
        finally:
            await iterator.aclose()
            outer.usage, outer.complete, outer.error = inner.usage, inner.complete, inner.error
        if inner.complete and inner.error is None:
            await on_complete(events, inner)

    outer = TappedStream(passthrough(), inner)
    reply.stream = outer
