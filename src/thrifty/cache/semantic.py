"""The `semantic_cache` stage: the same question in other words gets the stored answer.

Only where it is safe: the route must enable it, everything in the request but the
question must be identical (it is hashed into the namespace), the request must be
single-turn (or `question: last` says the last user message is the question and the rest
is part of the namespace), and tool use or sampling (temperature > 0, or unset, which
providers treat as 1) bypass it unless the route opts in. A candidate found by the vector
index is served only when the verifier (`thrifty.cache.verifier`) agrees the two
questions ask the same thing, judged on the part where they differ (`thrifty.cache.differ`:
a shared few-shot block or template is set aside); a tenant only ever searches its own entries. Only complete,
successful answers are stored: never errors, truncated or cut-off streams, or tool calls.

Settings (`semantic_cache:` and `routes.<route>.semantic_cache:`): see `SemanticCacheSettings`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from thrifty.cache.differ import verify_pairs
from thrifty.cache.index import Hit, InProcessIndex, SemanticIndex
from thrifty.cache.verifier import Verifier, default_verifier
from thrifty.pipeline.lever import Lever
from thrifty.pipeline.tap import tap
from thrifty.protocol.view import only_text
from thrifty.types import Answerer, Context, EventStream, Handler, Reply, SSEEvent, Usage

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

log = logging.getLogger(__name__)

NAME = "semantic_cache"

#: Request keys that do not change the answer and so stay out of the namespace.
_VOLATILE_KEYS = ("stream", "stream_options", "user", "metadata")
_OPENAI_DONE = ("stop",)
_ANTHROPIC_DONE = ("end_turn", "stop_sequence")


class SemanticCacheSettings(BaseModel):
    """`semantic_cache:` settings, per route."""

    model_config = ConfigDict(extra="forbid")

    #: Off unless a route (or the top level) turns it on.
    enabled: bool = False
    #: Seconds a stored answer may be served.
    ttl: float = Field(default=86_400.0, gt=0)
    #: Candidates the index returns for the verifier to check.
    top_k: int = Field(default=4, ge=1, le=50)
    #: Candidates below this cosine similarity are not even checked.
    min_cosine: float = Field(default=0.7, ge=-1.0, le=1.0)
    #: Verifier probability needed to serve; unset uses the shipped threshold (adjudicated precision >= 0.95 on QQP validation).
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    #: "only": the request must have one user message (after system messages);
    #: "last": the last user message is the question, the earlier turns join the namespace.
    question: Literal["only", "last"] = "only"
    #: Serve and store requests with temperature > 0 (or no temperature).
    allow_sampling: bool = False
    #: Serve and store requests that offer tools.
    allow_tools: bool = False
    #: Entries per tenant and namespace before the oldest give way.
    max_entries: int = Field(default=100_000, ge=1)
    #: Where the vectors live: auto (PostgreSQL + pgvector when the store is PostgreSQL, else in
    #: process), memory, or a postgresql:// URL. Read from the top-level section only.
    index: str = Field(default="auto", pattern=r"^(auto|memory|postgres(ql)?://.+)$")
    #: Longer questions are not cached (they are rarely asked twice, and cost embedding time).
    max_question_chars: int = Field(default=4_000, ge=1)


@dataclass(frozen=True)
class Question:
    """The question of a request and the namespace its answer may be shared in."""

    text: str
    namespace: str




def extract_question(protocol: str, body: dict[str, Any], settings: SemanticCacheSettings) -> Question | str:
    """The question and namespace of `body`, or the reason it cannot use the semantic cache."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    if not settings.allow_tools and any(body.get(k) for k in ("tools", "functions", "tool_choice")):
        return "tools"
    temperature = body.get("temperature")
    if not settings.allow_sampling and not (isinstance(temperature, int | float) and temperature <= 0):
        return "sampling"
    if body.get("n", 1) != 1:
        return "n > 1"
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if any(r not in ("system", "developer", "user", "assistant") for r in roles):
        return "tool messages"
    for m in messages:
        if m.get("tool_calls") or m.get("function_call"):
            return "tool messages"
        content = m.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("tool_use", "tool_result") for p in content
        ):
            return "tool messages"
    users = [i for i, r in enumerate(roles) if r == "user"]
    if not users or roles[-1] != "user":
        return "no final user message"
    if settings.question == "only" and (len(users) != 1 or "assistant" in roles):
        return "multi-turn"
    index = users[-1]
    text = only_text(messages[index].get("content"))
    if text is None:
        return "non-text question"
    text = text.strip()
    if not text:
        return "empty question"
    if len(text) > settings.max_question_chars:
        return "question too long"
    rest = {k: v for k, v in body.items() if k not in _VOLATILE_KEYS}
    rest["messages"] = [m if i != index else {**m, "content": None} for i, m in enumerate(messages)]
    key = orjson.dumps({"protocol": protocol, "request": rest}, option=orjson.OPT_SORT_KEYS)
    return Question(text, hashlib.sha256(key).hexdigest())


def complete_body(protocol: str, body: dict[str, Any]) -> bool:
    """A finished, tool-free, untruncated answer (the only kind worth storing)."""
    if protocol == "anthropic":
        content = body.get("content") or []
        if any(isinstance(b, dict) and b.get("type") != "text" for b in content):
            return False
        return body.get("stop_reason") in _ANTHROPIC_DONE
    choices = body.get("choices") or []
    if len(choices) != 1:
        return False
    message = choices[0].get("message") or {}
    if message.get("tool_calls") or message.get("function_call"):
        return False
    return choices[0].get("finish_reason") in _OPENAI_DONE


def _collect(protocol: str, events: list[SSEEvent]) -> dict[str, Any]:
    """The complete body a stream amounts to (protocol helpers)."""
    if protocol == "anthropic":
        from thrifty.protocol.anthropic import collect_anthropic

        return collect_anthropic(events)
    from thrifty.protocol.openai import collect_openai

    return collect_openai(events)


def _replay(ctx: Context, body: dict[str, Any]) -> EventStream:
    """A stored complete answer as the SSE events a live stream would have sent."""
    if ctx.protocol == "anthropic":
        from thrifty.protocol.anthropic import replay_anthropic

        events = replay_anthropic(copy.deepcopy(body))
    else:
        from thrifty.protocol.openai import replay_openai

        options = ctx.body.get("stream_options") or {}
        events = replay_openai(copy.deepcopy(body), bool(options.get("include_usage")))
    return EventStream.replay(events)


class SemanticCache(Lever[SemanticCacheSettings]):
    """The lever. `index`, `verifier` and `embed` are shared by every traffic class; when not
    given they are made at `start` (the gateway's shared index, the shipped verifier, the
    embedded MiniLM)."""

    name = NAME
    Settings = SemanticCacheSettings

    def __init__(
        self,
        gateway: Gateway,
        index: SemanticIndex | None = None,
        verifier: Verifier | None = None,
        embed: Any = None,
    ) -> None:
        super().__init__(gateway)
        self._index = index
        self._verifier = verifier
        self._embed = embed
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        services = self.gateway.services
        if self._index is None:
            if services.semantic_index is None:
                services.semantic_index = self._open_index()
            self._index = services.semantic_index
        if self._verifier is None:
            self._verifier = default_verifier()
        if self._embed is None:
            from thrifty.embed import shared_embedder

            self._embed = shared_embedder().embed_one

    def _open_index(self) -> SemanticIndex:
        """In process, or in PostgreSQL + pgvector (shared by replicas) when the store is
        PostgreSQL or `index:` names a database."""
        max_entries = max(self.settings(t).max_entries for t in self.traffic_classes(self.config))
        where = self.settings("default").index
        if where == "auto":
            where = self.config.store if self.config.store.startswith(("postgresql://", "postgres://")) else "memory"
        if where == "memory":
            return InProcessIndex(max_entries=max_entries)
        from thrifty.cache.pgvector_index import PgVectorIndex

        return PgVectorIndex(where, max_entries=max_entries)

    async def aclose(self) -> None:
        closer = getattr(self._index, "close", None)
        if closer is not None:
            await asyncio.to_thread(closer)

    @property
    def index(self) -> SemanticIndex:
        if self._index is None:
            self.start()
        assert self._index is not None
        return self._index

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self.start()
        assert self._verifier is not None
        return self._verifier

    @property
    def embed(self) -> Any:
        if self._embed is None:
            self.start()
        return self._embed

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        settings = self.settings(ctx.traffic)
        found = extract_question(ctx.protocol, ctx.body, settings)
        if isinstance(found, str):
            ctx.extra[NAME] = {"outcome": "bypass", "reason": found}
            return await next(ctx)
        cache_control = {k.lower(): v.lower() for k, v in ctx.headers.items()}.get("cache-control", "")
        vector: np.ndarray | None = None
        hit: tuple[Hit, float] | None = None
        if "no-cache" not in cache_control and self.index.has(ctx.tenant, found.namespace):
            vector, hit = await asyncio.to_thread(self._lookup, ctx.tenant, found, settings, False)
        if hit is not None:
            reply = self._serve(ctx, hit)
            if reply is not None:
                return reply
        ctx.extra[NAME] = {"outcome": "miss"}
        before = dict(ctx.savings)
        reply = await next(ctx)
        if "no-store" not in cache_control:
            self._store_later(ctx, reply, found, vector, settings, before)
        return reply

    # -- lookup ------------------------------------------------------------------------

    def _lookup(
        self, tenant: str, q: Question, settings: SemanticCacheSettings, skip: bool
    ) -> tuple[np.ndarray, tuple[Hit, float] | None]:
        """Embed, search and verify, in a worker thread: the vector and the accepted hit."""
        vector = self.embed(q.text)
        if skip:
            return vector, None
        return self._lookup_vector(tenant, q, settings, vector)

    def _lookup_vector(
        self, tenant: str, q: Question, settings: SemanticCacheSettings, vector: np.ndarray
    ) -> tuple[np.ndarray, tuple[Hit, float] | None]:
        """Search and verify for an embedded question."""
        hits = self.index.search(tenant, q.namespace, vector, settings.top_k, settings.min_cosine)
        if not hits:
            return vector, None
        # Decided on the part where the two questions differ (a shared template or few-shot
        # block would otherwise make any two questions behind it look the same).
        verdicts, _ = verify_pairs(
            self.verifier,
            lambda texts: np.stack([self.embed(t) for t in texts]),
            [(h.entry.question, h.entry.vector) for h in hits],
            [(q.text, vector)] * len(hits),
            settings.threshold,
        )
        best = max(
            ((h, v.score) for h, v in zip(hits, verdicts, strict=True) if v.same), key=lambda x: x[1], default=None
        )
        return vector, best

    def _serve(self, ctx: Context, found: tuple[Hit, float]) -> Reply:
        """Answer from the matched entry: zero billed tokens, the original cost saved."""
        hit, score = found
        payload = hit.entry.payload
        body: dict[str, Any] = payload["body"]
        usage = Usage.from_dict(payload.get("usage") or {})
        reply = Reply(status=200, usage=Usage(), served_model=payload.get("model", ""), provider=NAME)
        if ctx.stream:
            reply.stream = _replay(ctx, body)
        else:
            reply.body = copy.deepcopy(body)
        ctx.save(NAME, Decimal(payload.get("cost", "0")), usage.total_input_tokens + usage.output_tokens)
        # What other levers saved on the original (a router's pick, say) is saved again: the
        # counterfactual of this request is the original's, as for the exact cache.
        for lever, amount in (payload.get("savings") or {}).items():
            ctx.save(lever, Decimal(amount))
        ctx.cache_outcome = "semantic-hit"
        ctx.target_model = ctx.target_model or reply.served_model
        ctx.answered_by = Answerer.SEMANTIC_CACHE
        ctx.extra[NAME] = {
            "outcome": "hit",
            "score": round(score, 4),
            "cosine": round(hit.score, 4),
            "matched": hit.entry.question[:200],
        }
        return reply

    # -- store -------------------------------------------------------------------------

    def _store_later(
        self,
        ctx: Context,
        reply: Reply,
        q: Question,
        vector: np.ndarray | None,
        settings: SemanticCacheSettings,
        before: dict[str, Decimal],
    ) -> None:
        if not reply.ok or ctx.dedup_role == "follower":
            return
        tenant, protocol = ctx.tenant, ctx.protocol

        def saved() -> dict[str, str]:
            return {k: str(v - before.get(k, Decimal(0))) for k, v in ctx.savings.items() if v != before.get(k)}

        if reply.stream is None:
            if reply.body is None or not complete_body(protocol, reply.body):
                return
            payload = self._payload(reply, reply.usage, copy.deepcopy(reply.body), saved())
            task = asyncio.get_running_loop().create_task(self._add(tenant, q, vector, payload, settings))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return

        async def add_it(events: list[SSEEvent], inner: EventStream) -> None:
            body = _collect(protocol, events)
            if complete_body(protocol, body):
                await self._add(tenant, q, vector, self._payload(reply, inner.usage, body, saved()), settings)

        tap(reply, add_it)

    @staticmethod
    def _payload(reply: Reply, usage: Usage, body: dict[str, Any], saved: dict[str, str]) -> dict[str, Any]:
        return {
            "body": body, "model": reply.served_model, "usage": usage.to_dict(), "cost": str(reply.cost),
            "savings": saved,
        }  # fmt: skip

    async def _add(
        self,
        tenant: str,
        q: Question,
        vector: np.ndarray | None,
        payload: dict[str, Any],
        settings: SemanticCacheSettings,
    ) -> None:
        """Store an answer. A question that found nothing to search is embedded only now, after the reply."""

        def add() -> None:
            vec = self.embed(q.text) if vector is None else vector
            self.index.add(tenant, q.namespace, q.text, vec, payload, settings.ttl)

        try:
            await asyncio.to_thread(add)
        except Exception:  # a cache that cannot store must never fail the request
            log.exception("semantic cache: storing an answer failed")
