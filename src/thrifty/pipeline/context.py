"""What a request carries through the pipeline, and what comes back.

Every stage sees the same `Context` and returns a `Reply`. The request body stays in the
protocol the client spoke (OpenAI chat completions or Anthropic messages) so that a request
that no lever touches reaches its provider byte for byte; stages that need a
protocol-neutral view use `thrifty.protocol`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from thrifty.config import Config, ModelConfig

Protocol = Literal["openai", "anthropic"]


@dataclass
class Usage:
    """Token counts as the provider bills them.

    `input_tokens` are the uncached input tokens billed at the base rate; cache reads and
    writes are counted apart because they are priced apart. `output_tokens` include the
    reasoning tokens, which are listed again in `reasoning_tokens` for reporting.
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.cache_write_1h_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class SSEEvent:
    """One server-sent event. `data` is a decoded JSON object, or a raw string such as `[DONE]`."""

    data: dict[str, Any] | str
    event: str | None = None


class EventStream:
    """A streamed reply: an async iterator of events in the client's protocol.

    After iteration ends, `usage` holds the final token counts, `complete` says whether the
    stream reached its natural end (a stream cut short must never be cached) and `error`
    holds the failure that ended it early, if any. Whoever stops reading early must call
    `aclose()`, which closes the source (freeing the upstream connection) and runs the
    `on_finish` callbacks exactly once, however the stream ended.
    """

    def __init__(self, events: AsyncIterator[SSEEvent]) -> None:
        self._events = events
        self.usage = Usage()
        self.complete = False
        self.error: str | None = None
        self.first_event_at: float | None = None
        self._finalizers: list[Callable[[EventStream], Awaitable[None] | None]] = []
        self._finished = False

    @classmethod
    def replay(cls, events: list[SSEEvent]) -> EventStream:
        """A stream of events already in hand (a stored answer), complete once all are read."""

        async def generate() -> AsyncIterator[SSEEvent]:
            for event in events:
                yield event
            stream.complete = True

        stream = cls(generate())
        return stream

    def on_finish(self, callback: Callable[[EventStream], Awaitable[None] | None]) -> None:
        """Run `callback(stream)` once the stream has ended, however it ended."""
        self._finalizers.append(callback)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SSEEvent:
        if self._finished:
            raise StopAsyncIteration
        try:
            event = await self._events.__anext__()
        except StopAsyncIteration:
            await self._finish()
            raise
        except BaseException as exc:
            # A reader that was cancelled or closed us is not an upstream failure.
            if self.error is None and not isinstance(exc, GeneratorExit | asyncio.CancelledError):
                self.error = f"{exc.__class__.__name__}: {exc}"
            await self.aclose()
            raise
        if self.first_event_at is None:
            self.first_event_at = time.perf_counter()
        return event

    async def aclose(self) -> None:
        """Stop the stream early (or after its end): close the source, run the callbacks."""
        closer = getattr(self._events, "aclose", None)
        if closer is not None and not self._finished:
            try:
                await closer()
            except RuntimeError:  # already running or closed
                pass
        await self._finish()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        for callback in self._finalizers:
            try:
                result = callback(self)
                if result is not None:
                    await result
            except Exception:  # one broken callback must not skip the others (billing among them)
                logging.getLogger("thrifty.pipeline").exception("an on_finish callback of a stream failed")


@dataclass
class Reply:
    """What the pipeline answers: a complete body or a stream, in the client's protocol."""

    status: int = 200
    body: dict[str, Any] | None = None
    stream: EventStream | None = None
    usage: Usage = field(default_factory=Usage)
    served_model: str = ""
    provider: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    cost: Decimal = Decimal(0)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def new_request_id() -> str:
    """`req_` + 16 hex digits of the time in ns + 8 random hex digits.

    Ids sort by time, so the ledger's primary-key index grows at its end instead of taking
    random inserts (several times cheaper for SQLite and PostgreSQL alike)."""
    return f"req_{time.time_ns():016x}{random.getrandbits(32):08x}"


@dataclass
class Context:
    """Everything one request carries: the body, who sent it, and what the levers did to it."""

    protocol: Protocol
    body: dict[str, Any]
    config: Config
    request_id: str = field(default_factory=lambda: new_request_id())
    started: float = field(default_factory=time.time)
    started_perf: float = field(default_factory=time.perf_counter)
    key_name: str | None = None
    tenant: str = "default"
    tags: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    requested_model: str = ""
    target_model: str = ""
    #: Savings in USD that each lever claims, by lever name. Counterfactual = cost + sum.
    savings: dict[str, Decimal] = field(default_factory=dict)
    #: Tokens each lever removed from the request (for reports), by lever name.
    tokens_saved: dict[str, int] = field(default_factory=dict)
    cache_outcome: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Free-form per-stage facts that end up in the ledger row's `extra` column.
    extra: dict[str, Any] = field(default_factory=dict)
    original_body: dict[str, Any] | None = None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def route(self) -> str:
        return self.tags.get("route", "default")

    def route_settings(self, lever: str) -> dict[str, Any]:
        """The settings of `lever` for this request's route (route overrides on top of defaults)."""
        return self.config.lever_settings(lever, self.route)

    def model_config(self, name: str | None = None) -> ModelConfig:
        return self.config.model(name or self.target_model or self.requested_model)

    def save(self, lever: str, amount: Decimal, tokens: int = 0) -> None:
        """Record that `lever` saved `amount` USD (and `tokens` tokens) on this request."""
        if amount:
            self.savings[lever] = self.savings.get(lever, Decimal(0)) + amount
        if tokens:
            self.tokens_saved[lever] = self.tokens_saved.get(lever, 0) + tokens

    def note(self, message: str) -> None:
        self.notes.append(message)


Handler = Callable[[Context], Awaitable[Reply]]
