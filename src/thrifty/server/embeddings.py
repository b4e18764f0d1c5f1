"""`POST /v1/embeddings`: pass-through to OpenAI-compatible models, the shipped MiniLM for a
`provider: local` model, and a per-input exact cache in front of both.

A batch that mixes inputs seen before with new ones sends only the new ones upstream (each
distinct input once) and answers every input's vector in its own position. Each request
is one ledger row: the tokens billed for the new inputs, priced like input tokens of the
model, and the `embedding_cache` lever's saving (the tokens the cached inputs cost when
they were embedded, at today's price). Spend admission (key limits, budgets, rate limits)
reserves before any upstream call, as on chat. The chat levers (the response cache, dedup,
compression, routing) do not act here: the per-input cache is this endpoint's own, and it
already sends each distinct input of a batch once.

The `embeddings:` config section:

    embeddings:
      cache: true            # the per-input cache (in thrifty's store, shared by replicas)
      memory_entries: 20000  # vectors kept in process in front of the store
      max_inputs: 2048       # inputs per request (OpenAI's limit)
      max_input_tokens: 8192 # tokens per input (OpenAI's limit)
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import numpy as np
import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from thrifty.cache.embeddings import MIGRATIONS, CachedVector, EmbeddingCache, assemble, input_key, plan
from thrifty.config import lever_model
from thrifty.errors import BadRequest, NotFound, ThriftyError, Unauthorized
from thrifty.gateway import Gateway
from thrifty.ledger.prices import pricer
from thrifty.ledger.tokens import count_text
from thrifty.protocol.errors import truncate
from thrifty.providers.embeddings import embed
from thrifty.server.app import Handlers, parse_tags
from thrifty.server.guard import KEYS, error_response
from thrifty.sqldb import SQLDatabase
from thrifty.types import Answerer, Context, Reply, Usage

__all__ = ["EmbeddingsSettings", "setup"]

log = logging.getLogger(__name__)

LEVER = "embedding_cache"


class EmbeddingsSettings(BaseModel):
    """The `embeddings:` config section."""

    model_config = ConfigDict(extra="forbid")

    cache: bool = True
    memory_entries: int = Field(default=20_000, ge=0)
    max_inputs: int = Field(default=2048, ge=1)
    max_input_tokens: int = Field(default=8192, ge=1)


def _inputs(value: Any) -> list[str | list[int]]:
    """The request's `input` as a list of items (a text, or a list of token ids)."""
    def is_tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)

    if isinstance(value, str):
        items: list[Any] = [value]
    elif is_tokens(value):
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise BadRequest("'input' must be a string, an array of strings, or token ids", "input")
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise BadRequest(f"input[{i}] is empty; every input must hold text", "input")
        elif not is_tokens(item):
            raise BadRequest(f"input[{i}] must be a string or an array of token ids", "input")
    return items


class EmbeddingsHandlers:
    def __init__(self, gateway: Gateway, handlers: Handlers) -> None:
        self.gateway = gateway
        self.h = handlers
        self.settings = lever_model(gateway.config, "embeddings", EmbeddingsSettings)
        self.cache: EmbeddingCache | None = None

    async def open(self) -> None:
        if self.settings.cache:
            db = await asyncio.to_thread(SQLDatabase, self.gateway.config.store, "embedding_cache", MIGRATIONS)
            self.cache = EmbeddingCache(db, self.settings.memory_entries)
            self.gateway.services.plugins[LEVER] = self.cache

    async def close(self) -> None:
        if self.cache is not None:
            await asyncio.to_thread(self.cache.close)
            self.cache = None

    async def create(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        principal = await self.h.principal(request)
        if principal is None:
            return error_response("openai", Unauthorized("missing or invalid thrifty key", code="invalid_api_key"))
        try:
            body = await self.h._read_json(request)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest("missing required field 'model'", "model")
            if not self.gateway.config.has_model(model):
                known = ", ".join(m.name for m in self.gateway.config.models) or "none"
                raise NotFound(f"the model {truncate(model)!r} is not configured in thrifty (configured: {known})",
                               param="model", code="model_not_found")
            items = _inputs(body.get("input"))
            fmt = body.get("encoding_format", "float")
            if fmt not in ("float", "base64"):
                raise BadRequest("'encoding_format' must be float or base64", "encoding_format")
            dimensions = body.get("dimensions")
            if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)
                                           or dimensions < 1):
                raise BadRequest("'dimensions' must be a positive integer", "dimensions")
            limit = self.settings.max_inputs
            if len(items) > limit:
                raise BadRequest(f"this batch has {len(items)} inputs; the limit is {limit} inputs per request "
                                 "(embeddings.max_inputs)", "input")
            for i, item in enumerate(items):
                n = len(item) if isinstance(item, list) else count_text(item)
                if n > self.settings.max_input_tokens:
                    raise BadRequest(f"input[{i}] has {n} tokens; the limit is {self.settings.max_input_tokens} "
                                     "tokens per input (embeddings.max_input_tokens)", "input")
            tags = parse_tags(request.headers.get("X-Thrifty-Tags"), None)
        except ThriftyError as exc:
            return error_response("openai", exc)
        cfg = self.gateway.config.model(model)
        ctx = Context(protocol="openai", body=body, config=self.gateway.config, key_name=principal.name,
                      tenant=principal.tenant, tags=tags, requested_model=model, target_model=model,
                      endpoint="embeddings")
        ctx.extra["endpoint"] = "embeddings"
        ctx.extra["inputs"] = len(items)
        refused = await self.h.admit(ctx, principal, "openai")
        if refused is not None:
            return refused
        # in the tenant's namespace, as the chat cache: a hit must not tell one tenant what another embedded
        scope = f"{principal.tenant}|{cfg.name}|{cfg.provider}|{cfg.upstream_model}|{cfg.base_url or ''}"
        keys = [input_key(scope, dimensions, item) for item in items]
        reply = Reply(served_model=cfg.name, provider=cfg.provider)
        if pricer.rates(cfg).source == "unknown":  # billed $0: the row says why, never silently
            ctx.extra["price_unknown"] = f"no price known for {cfg.upstream_model!r} ({cfg.provider}); set price: on it"
        try:
            cached = await self.cache.aget_many(keys) if self.cache is not None else {}
            todo = plan(keys, cached)
            fresh: list[list[float]] = []
            paid: dict[str, int] = {}  # tokens billed for each input sent now
            if todo:
                provider = self.gateway.providers[cfg.name]
                user = body.get("user") if isinstance(body.get("user"), str) else None
                done = await embed(cfg, provider.protocol, [items[i] for i in todo], dimensions, user)
                fresh = done.vectors
                paid = {keys[i]: t for i, t in zip(todo, done.tokens_each, strict=True)}
                reply.usage = Usage(input_tokens=done.tokens, estimated=done.estimated)
                if self.cache is not None:
                    await self.cache.aput_many({keys[i]: CachedVector(v, t)
                                                for i, v, t in zip(todo, done.vectors, done.tokens_each, strict=True)})
        except ThriftyError as exc:
            self.h._record(ctx, None, exc.status, "error", exc.message, started, None)
            return error_response("openai", exc, headers={"X-Thrifty-Request-Id": ctx.request_id})
        except Exception as exc:
            log.exception("embeddings request %s failed inside thrifty", ctx.request_id)
            message = f"thrifty failed to handle this request ({exc.__class__.__name__}); see the server log"
            self.h._record(ctx, None, 500, "error", message, started, None)
            return error_response("openai", 500, message, headers={"X-Thrifty-Request-Id": ctx.request_id})
        vectors = assemble(keys, {k: v.vector for k, v in cached.items()}, todo, fresh)
        reply.cost = pricer.cost(cfg, reply.usage)
        sent = set(todo)
        # every input not sent was paid before (cached) or once in this batch (a repeat)
        saved_tokens = sum(cached[k].tokens if k in cached else paid[k] for i, k in enumerate(keys) if i not in sent)
        if saved_tokens:
            ctx.save(LEVER, pricer.input_rate(cfg) * saved_tokens, saved_tokens)
        ctx.cache_outcome = "miss" if len(todo) == len(keys) else ("hit" if not todo else "partial")
        if not todo:
            ctx.answered_by = Answerer.CACHE
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
        tokens = reply.usage.input_tokens
        answer = {"object": "list", "data": data, "model": cfg.upstream_model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        self.h._record(ctx, reply, 200, "ok", None, started, None)
        headers = {"X-Thrifty-Request-Id": ctx.request_id, "X-Thrifty-Model": cfg.name,
                   "X-Thrifty-Cache": ctx.cache_outcome}
        return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=headers)


def _encode(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":  # what OpenAI sends: little-endian float32
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def setup(app: web.Application, gateway: Gateway) -> None:
    """Add /v1/embeddings (and /embeddings), and open the cache with the application."""
    handlers = EmbeddingsHandlers(gateway, Handlers(gateway, app[KEYS]))
    app.router.add_post("/v1/embeddings", handlers.create)
    app.router.add_post("/embeddings", handlers.create)

    async def open_cache(_app: web.Application) -> None:
        await handlers.open()

    async def close_cache(_app: web.Application) -> None:
        await handlers.close()

    app.on_startup.append(open_cache)
    app.on_cleanup.append(close_cache)

