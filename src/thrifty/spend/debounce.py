"""Debounce: a key's repeated request, inside its window, is answered from the first result.

Chatty clients (a UI that fires on every keystroke, an agent that retries a step it already
sent) send the same request again within seconds. A key created with `debounce: N` has each
such repeat answered from the first one's result: while the first is in flight the repeat
waits for it; after it, the repeat gets its answer (a stream is replayed). The ledger records
the repeat at zero cost with the first one's cost as the `debounce` saving. A first request
that fails debounces nothing: repeats go to the provider.

Unlike the cache, the window is per key and short; unlike `dedup`, it also covers repeats that
arrive after the first ended. The lever is on wherever the config has a `spend:` section (even
`spend: {}`), and idle for keys without a window.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson
from pydantic import BaseModel, ConfigDict, Field

from thrifty.config import Config
from thrifty.pipeline.lever import Lever
from thrifty.types import Answerer, Context, EventStream, Handler, Reply, SSEEvent, Usage

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

__all__ = ["DebounceSettings", "DebounceStage"]


class DebounceSettings(BaseModel):
    """`debounce:` in thrifty.yaml (the window itself is each key's `debounce`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Requests remembered at most (the oldest are forgotten first).
    max_entries: int = Field(default=10_000, ge=1)


@dataclass
class _First:
    at: float
    window: float
    done: asyncio.Future[tuple[Reply, list[SSEEvent] | None] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


def fingerprint(ctx: Context) -> str:
    raw = orjson.dumps([ctx.protocol, ctx.body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


class DebounceStage(Lever[DebounceSettings]):
    name = "debounce"
    Settings = DebounceSettings
    client_only = True
    place_after = "canonicalize"

    @classmethod
    def configured(cls, config: Config) -> bool:
        """On wherever spend control is configured (a `spend:` section, even empty) or its own
        section is; a gateway without either keeps its pipeline as it was."""
        return config.has_section("spend") or super().configured(config)

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self._recent: dict[tuple[str, str], _First] = {}

    def _window(self, ctx: Context) -> float:
        spend = self.gateway.services.spend
        if spend is None or ctx.key_name is None:
            return 0.0
        return spend.debounce_of(ctx.key_name)

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        window = self._window(ctx)
        if window <= 0:
            return await next(ctx)
        k = (ctx.key_name or "", fingerprint(ctx))
        now = time.monotonic()
        first = self._recent.get(k)
        if first is not None and now - first.at <= first.window:
            result = await asyncio.shield(first.done)
            if result is not None:
                return self._answer(ctx, *result)
            return await next(ctx)
        first = _First(at=now, window=window)
        self._recent[k] = first
        self._prune(now)
        try:
            reply = await next(ctx)
        except BaseException:
            first.done.set_result(None)
            raise
        if reply.stream is None:
            first.done.set_result((reply, None) if reply.ok else None)
            return reply
        return self._tee(reply, first)

    def _tee(self, reply: Reply, first: _First) -> Reply:
        inner = reply.stream
        assert inner is not None
        events: list[SSEEvent] = []

        async def events_of() -> AsyncIterator[SSEEvent]:
            try:
                async for ev in inner:
                    events.append(ev)
                    yield ev
            finally:
                await inner.aclose()
                outer.usage, outer.complete, outer.error = inner.usage, inner.complete, inner.error

        def finished(stream: EventStream) -> None:
            if not first.done.done():
                first.done.set_result((reply, events) if stream.complete and not stream.error else None)

        outer = EventStream(events_of())
        outer.on_finish(finished)
        reply.stream = outer
        return reply

    def _answer(self, ctx: Context, first: Reply, events: list[SSEEvent] | None) -> Reply:
        usage = first.usage
        ctx.save(self.name, first.cost, usage.total_input_tokens + usage.output_tokens)
        ctx.answered_by = Answerer.DEBOUNCE
        reply = Reply(status=first.status, body=copy.deepcopy(first.body), usage=Usage(), cost=Decimal(0),
                      served_model=first.served_model, provider=first.provider,
                      headers={**first.headers, "X-Thrifty-Debounced": "1"})
        if events is not None:
            reply.body = None
            reply.stream = EventStream.replay(list(events))
        return reply

    def _prune(self, now: float) -> None:
        limit = self.settings("default").max_entries
        if len(self._recent) <= limit:
            return
        for key in [k for k, f in self._recent.items() if now - f.at > f.window]:
            del self._recent[key]
        while len(self._recent) > limit:
            del self._recent[next(iter(self._recent))]
