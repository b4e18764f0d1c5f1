"""The exact response cache: an identical deterministic request gets the stored answer.

The key is the canonical request (`thrifty.cache.key`) in the tenant's namespace. By default
only deterministic requests (temperature 0, or a seed) are served from cache, because a
sampled request asked for a fresh sample; a route can change that. A hit costs nothing: it is
billed as zero tokens and the ledger records the original cost as the cache's saving. A
streaming request is answered by replaying the stored body as the SSE chunks a live stream
sends, with usage, so SDKs cannot tell the difference. Only complete successful replies are
stored: errors never, and a stream only when it reached its end without an error.

Request headers: `Cache-Control: no-cache` skips the lookup but stores the fresh answer;
`no-store` skips both; `max-age=N` accepts only an answer stored in the last N seconds.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from thrifty.cache.key import context_key, is_deterministic
from thrifty.cache.stores import CachedResponse, ResponseStore, open_store
from thrifty.config import Config, lever_model
from thrifty.health import DependencyUnavailable
from thrifty.pipeline.lever import Lever
from thrifty.pipeline.tap import tap
from thrifty.protocol.replay import replay_events
from thrifty.types import Answerer, Context, EventStream, Handler, Reply, SSEEvent, Usage

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

log = logging.getLogger(__name__)

#: The response header that names the cache key (for invalidation by key).
KEY_HEADER = "X-Thrifty-Cache-Key"


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Seconds an answer stays servable; None keeps it until evicted or invalidated.
    ttl: float | None = Field(default=86_400.0, gt=0)
    #: memory | sqlite (next to the ledger) | sqlite:///PATH | redis://HOST:PORT/DB
    store: str | None = None
    #: Serve only requests with temperature 0 or a seed.
    deterministic_only: bool = True
    #: Bounds of the in-memory LRU in front of SQLite.
    memory_entries: int = Field(default=10_000, ge=1)
    memory_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Prefix of the Redis keys (when the store is Redis).
    prefix: str = "thrifty:cache:"
    #: Milliseconds of Redis time a request may spend on lookups (cache and dedup share it);
    #: past it, or while Redis fails, the request goes on without the cache.
    redis_budget_ms: float = Field(default=100.0, gt=0)

    @model_validator(mode="after")
    def _shared_redis(self, info: ValidationInfo) -> CacheSettings:
        """With no store of its own, the cache lives in the config's shared `redis:`."""
        redis = (info.context or {}).get("redis")
        if self.store is None and redis:
            self.store = redis
        return self


def cache_control(headers: dict[str, str]) -> dict[str, str | None]:
    """The request's Cache-Control directives, lower-cased: {"no-cache": None, "max-age": "60"}."""
    raw = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
    directives: dict[str, str | None] = {}
    for part in raw.split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip().strip('"') or None
    return directives


class StoreSet:
    """The stores the configuration names, opened once and shared by URL."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stores: dict[str, ResponseStore] = {}

    def settings(self, route: str) -> CacheSettings:
        return lever_model(self.config, "cache", CacheSettings, route)

    def for_settings(self, settings: CacheSettings) -> ResponseStore:
        url = settings.store or "sqlite"
        if url.startswith(("redis://", "rediss://", "unix://")):
            url = f"{url}#{settings.prefix}"
        store = self.stores.get(url)
        if store is None:
            store = open_store(
                settings.store,
                ledger_store=self.config.store,
                memory_entries=settings.memory_entries,
                memory_bytes=settings.memory_bytes,
                prefix=settings.prefix,
                redis_budget_ms=settings.redis_budget_ms,
            )
            self.stores[url] = store
        return store

    def all(self) -> list[ResponseStore]:
        """Every store that any route uses (opening those not open yet)."""
        for route in ExactCacheStage.traffic_classes(self.config):
            self.for_settings(self.settings(route))
        return list(self.stores.values())

    async def invalidate(
        self,
        *,
        key: str | None = None,
        route: str | None = None,
        tags: dict[str, str] | None = None,
        tenant: str | None = None,
        everything: bool = False,
    ) -> int:
        """Delete by key, or by route / tags / tenant, or everything; returns entries removed."""
        removed = 0
        for store in self.all():
            if key is not None:
                removed += await store.delete(key)
            elif everything:
                removed += await store.clear()
            else:
                removed += await store.delete_where(route=route, tags=tags, tenant=tenant)
        return removed

    async def close(self) -> None:
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                await store.close()
        self.stores.clear()


class ExactCacheStage(Lever[CacheSettings]):
    """The `cache` lever."""

    name = "cache"
    Settings = CacheSettings

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.stores = StoreSet(gateway.config)
        self.hits = 0
        self.misses = 0
        self.stored = 0
        #: Entries read back that could not be served (undecodable, or not this request's).
        self.unusable = 0
        self._unusable_logged = -60.0

    def start(self) -> None:
        self.gateway.services.cache = self

    def _unusable(self, key: str, why: str) -> None:
        """An entry that cannot be served: counted, a miss, and logged at most once a minute."""
        self.unusable += 1
        now = time.monotonic()
        if now - self._unusable_logged >= 60:
            self._unusable_logged = now
            log.warning("cache: entry %s not served (%s); %d such entries since start", key[:16], why, self.unusable)

    def stats(self) -> dict[str, float]:
        """Counters since start, for /metrics."""
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored, "unusable": self.unusable}

    async def aclose(self) -> None:
        """Close the stores (the gateway calls this at shutdown)."""
        await self.stores.close()

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        settings = self.settings(ctx.traffic)
        directives = cache_control(ctx.headers)
        if "no-store" in directives or (settings.deterministic_only and not is_deterministic(ctx.body)):
            ctx.cache_outcome = "bypass"
            return await next(ctx)
        key = context_key(ctx)
        ctx.extra["cache_key"] = key
        store = self.stores.for_settings(settings)
        if "no-cache" in directives:
            ctx.cache_outcome = "bypass"
        else:
            entry = await self._lookup(store, key, directives, ctx)
            if entry is not None:
                self.hits += 1
                ctx.cache_outcome = "hit"
                return self._serve(ctx, entry, key)
            self.misses += 1
            ctx.cache_outcome = "miss"
        before = dict(ctx.savings)
        reply = await next(ctx)
        if ctx.dedup_role == "follower" or not reply.ok:
            return reply  # a follower's answer is the leader's, which the leader stores
        if reply.stream is not None:
            return self._tap(ctx, reply, store, key, settings, before)
        if reply.body is not None:
            reply.headers.setdefault(KEY_HEADER, key)
            await self._store(store, key, settings, self._entry(ctx, key, reply, reply.body, reply.usage, before))
        return reply

    async def _lookup(
        self, store: ResponseStore, key: str, directives: dict[str, str | None], ctx: Context
    ) -> CachedResponse | None:
        try:
            entry = await store.get(key)
        except DependencyUnavailable:  # Redis is down or slow: logged once by its health
            return None
        except Exception as exc:  # a broken store or undecodable data is a miss, never a failed request
            self._unusable(key, f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        if entry is not None:
            wrong = ("it was stored under another key" if entry.key != key
                     else "it belongs to another tenant" if entry.tenant != ctx.tenant
                     else "it answers another protocol" if entry.protocol != ctx.protocol
                     else "its body is not an object" if not isinstance(entry.body, dict) else None)
            if wrong is not None:
                self._unusable(key, wrong)
                return None
        max_age = directives.get("max-age")
        if entry is not None and max_age is not None:
            with contextlib.suppress(ValueError):
                if time.time() - entry.created > float(max_age):
                    return None
        return entry

    def _serve(self, ctx: Context, entry: CachedResponse, key: str) -> Reply:
        """Answer from `entry`: zero billed tokens, the original cost recorded as saved."""
        body = copy.deepcopy(entry.body)
        ctx.save("cache", entry.cost, entry.usage.total_input_tokens + entry.usage.output_tokens)
        for lever, amount in entry.savings.items():
            ctx.save(lever, amount)
        ctx.answered_by = Answerer.CACHE
        ctx.target_model = ctx.target_model or entry.served_model
        reply = Reply(
            status=200,
            usage=Usage(),
            served_model=entry.served_model,
            provider="cache",
            headers={KEY_HEADER: key},
            cost=Decimal(0),
        )
        if not ctx.stream:
            reply.body = body
            return reply
        reply.stream = EventStream.replay(
            replay_events(body, ctx.protocol, ctx.endpoint, ctx.body.get("stream_options"))
        )
        return reply

    def _entry(
        self, ctx: Context, key: str, reply: Reply, body: dict[str, Any], usage: Usage, before: dict[str, Decimal]
    ) -> CachedResponse:
        savings = {k: v - before.get(k, Decimal(0)) for k, v in ctx.savings.items() if v != before.get(k)}
        return CachedResponse(
            key=key,
            protocol=ctx.protocol,
            body=body,
            usage=usage,
            served_model=reply.served_model,
            provider=reply.provider,
            cost=reply.cost,
            savings=savings,
            tenant=ctx.tenant,
            route=ctx.traffic,
            tags=dict(ctx.tags),
        )

    async def _store(self, store: ResponseStore, key: str, settings: CacheSettings, entry: CachedResponse) -> None:
        try:
            await store.set(key, entry, settings.ttl)
            self.stored += 1
        except DependencyUnavailable:
            pass
        except Exception:
            log.warning("cache: store failed", exc_info=True)

    def _tap(
        self,
        ctx: Context,
        reply: Reply,
        store: ResponseStore,
        key: str,
        settings: CacheSettings,
        before: dict[str, Decimal],
    ) -> Reply:
        """Pass the stream through unchanged, keeping its events; store it if it completes."""

        async def store_it(events: list[SSEEvent], inner: EventStream) -> None:
            body = _collect(ctx, events, inner.usage)
            if body is not None:
                await self._store(store, key, settings, self._entry(ctx, key, reply, body, inner.usage, before))

        tap(reply, store_it)
        reply.headers.setdefault(KEY_HEADER, key)
        return reply




def _collect(ctx: Context, events: list[SSEEvent], usage: Usage) -> dict[str, Any] | None:
    """The complete body a finished stream amounts to, with usage (None if it has no answer)."""
    if ctx.endpoint == "completions":
        from thrifty.protocol.completions import collect_completion

        return collect_completion(events, usage)
    if ctx.responses is not None and events:
        from thrifty.protocol.responses_native import collect_response, is_response_event

        if is_response_event(events[0]):  # passed through: the final event holds the response
            return collect_response(events)
    if ctx.protocol == "anthropic":
        from thrifty.protocol.anthropic import collect_anthropic, finish_reason_of

        body = collect_anthropic(events)
        return body if finish_reason_of(body) is not None else None
    from thrifty.protocol.openai import collect_openai, usage_to_openai

    body = collect_openai(events)
    choices = body.get("choices") or []
    if not choices or any(c.get("finish_reason") is None for c in choices):
        return None
    if not body.get("usage"):
        body["usage"] = usage_to_openai(usage)
    return body
