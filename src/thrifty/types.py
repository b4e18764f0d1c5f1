"""The kernel types: what a request carries through the pipeline, and what comes back.

This module sits at the bottom of thrifty: it imports nothing else of thrifty at run time,
and every other package builds on it (types <- protocol <- ledger, providers, levers <-
pipeline <- server).

Every stage sees the same `Context` and returns a `Reply`. The request body stays in the
wire protocol the client spoke (`Wire`: OpenAI chat completions or Anthropic messages) so
that a request that no lever touches reaches its provider byte for byte; stages that need a
protocol-neutral view use `thrifty.protocol.view`.

What one stage tells another is a typed field of `Context` (`side_cost`, `answered_by`,
`dedup_role`, `levers_off`, `origin`, `route_decision`), never a key of `extra`, which
carries only facts for the ledger row.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from thrifty.config import Config

__all__ = [
    "Answerer",
    "Context",
    "DedupRole",
    "EventStream",
    "Handler",
    "NativeResponses",
    "Origin",
    "Reply",
    "RouteDecision",
    "SSEEvent",
    "Usage",
    "Wire",
    "new_request_id",
]

#: The wire protocol of a request or reply body: OpenAI chat completions or Anthropic messages.
Wire = Literal["openai", "anthropic"]

#: Where a request came from: a client, a shadow-evaluation rerun, or an eval run. Only
#: client traffic is sampled by shadow evaluation.
Origin = Literal["client", "shadow", "eval"]

#: A dedup leader makes the upstream call; a follower is answered with the leader's reply
#: (and so must not store it again in a cache).
DedupRole = Literal["leader", "follower"]


class Answerer(enum.StrEnum):
    """Who produced the answer the client got."""

    PROVIDER = "provider"
    CACHE = "cache"
    SEMANTIC_CACHE = "semantic_cache"
    DEDUP = "dedup"
    #: a key's repeated request inside its debounce window (thrifty.spend.debounce)
    DEBOUNCE = "debounce"


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
                logging.getLogger(__name__).exception("an on_finish callback of a stream failed")


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
class RouteDecision:
    """What the model-routing lever decided for one request: a ledger fact (`extra.route`),
    and what the lever's own saving is computed from once the reply is in."""

    requested: str
    model: str
    #: How the model was chosen: alias, rule:<label>, router, cascade or default.
    via: str
    #: The router's details (probabilities, policy, knob), where a router chose.
    detail: dict[str, Any] = field(default_factory=dict)
    #: When the pick could not take the request: {"from": model, "reason": why}.
    fallback: dict[str, str] | None = None
    #: The cascade's outcome: the tier accepted, with its score.
    cascade: dict[str, Any] | None = None
    #: The model the request would have gone to without routing.
    counterfactual_model: str | None = None
    #: Each cascade tier tried and refused: model, reason, score, cost (USD string).
    escalations: list[dict[str, Any]] = field(default_factory=list)
    #: What the cascade's judge tier was paid, for every answer it graded (served or not).
    judge_cost: Decimal = Decimal(0)

    def escalation_cost(self) -> Decimal:
        """What the cascade paid beside the served answer: refused tiers and the judge."""
        return sum((Decimal(str(e.get("cost", 0))) for e in self.escalations), Decimal(0)) + self.judge_cost

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requested": self.requested, "model": self.model, "via": self.via, **self.detail}
        if self.fallback is not None:
            out["fallback"] = self.fallback
        if self.cascade is not None:
            out["cascade"] = self.cascade
        if self.counterfactual_model is not None:
            out["counterfactual_model"] = self.counterfactual_model
        return out


@dataclass
class NativeResponses:
    """A Responses-API request as it goes to a provider that speaks that API itself.

    `Context.body` holds the chat-completions form of the request, which every lever reads;
    this is the request as the upstream receives it when the provider serves `/responses`
    natively: the client's body with earlier turns expanded into `input`, stateless
    (`store: false`). The dispatch stage sends it instead of the chat body to such a
    provider, and the chat body (or a 400 naming `untranslatable`) to any other."""

    body: dict[str, Any]
    #: What the chat form lacks (built-in tools, item types): a provider without the
    #: Responses API must refuse the request naming these, never drop them.
    untranslatable: list[str] = field(default_factory=list)
    #: The output limit of the chat form as built, so that a lever's change to it (the cap)
    #: can be carried over to `max_output_tokens`.
    chat_limit: int | None = None


@dataclass
class Context:
    """Everything one request carries: the body, who sent it, and what the levers did to it."""

    protocol: Wire
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
    #: The exact cache's lookup: hit, miss or bypass (the ledger's `cache` column).
    cache_outcome: str | None = None
    #: Who answered, when it was not the provider of this request's own call.
    answered_by: Answerer | None = None
    #: USD spent on side calls made for this request (cascade tiers, summaries, judges);
    #: the ledger row adds it to the reply's cost.
    side_cost: Decimal = Decimal(0)
    #: This request's part in in-flight deduplication, when dedup is on.
    dedup_role: DedupRole | None = None
    #: Levers that must stand aside for this request (a shadow rerun's reference, an eval).
    levers_off: frozenset[str] = frozenset()
    origin: Origin = "client"
    #: The routing lever's decision, when it routed this request.
    route_decision: RouteDecision | None = None
    #: The caller's task label (`X-Thrifty-Task`), for per-task reports.
    task: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Facts for the ledger row's `extra` column only; nothing reads them back on the path.
    extra: dict[str, Any] = field(default_factory=dict)
    original_body: dict[str, Any] | None = None
    #: The native Responses request, when this is a `/v1/responses` request that a provider
    #: may serve as is (see `NativeResponses`).
    responses: NativeResponses | None = None
    #: The API the body belongs to, where it is not chat (or messages): legacy text
    #: completions run through the cache and dedup too, keyed and replayed in their shape;
    #: spend admission estimates a completion's prompt and an embedding's inputs (no output).
    endpoint: Literal["chat", "completions", "embeddings"] = "chat"

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def traffic(self) -> str:
        """The traffic class (the `route` tag) whose per-route lever settings apply."""
        return self.tags.get("route", "default")

    @property
    def route(self) -> str:
        """Alias of `traffic` (the tag is called `route` on the wire and in the config)."""
        return self.tags.get("route", "default")

    def save(self, lever: str, amount: Decimal, tokens: int = 0) -> None:
        """Record that `lever` saved `amount` USD (and `tokens` tokens) on this request."""
        if amount:
            self.savings[lever] = self.savings.get(lever, Decimal(0)) + amount
        if tokens:
            self.tokens_saved[lever] = self.tokens_saved.get(lever, 0) + tokens

    def note(self, message: str) -> None:
        self.notes.append(message)


Handler = Callable[[Context], Awaitable[Reply]]
