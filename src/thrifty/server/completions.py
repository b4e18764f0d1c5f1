"""`POST /v1/completions`: legacy text completions, passed through to OpenAI-compatible models.

vLLM, SGLang, llama.cpp's server and fill-in-the-middle code models still serve raw text
completion (`prompt`, `suffix`, `echo`, `logprobs`), which means something a chat request
cannot: the model continues the text as given. So the request is relayed as it came (the
model name swapped for the upstream's), streamed or not, and billed from the upstream's
usage in one ledger row. A model that speaks Anthropic Messages, or the local chat engine,
has no raw completion; such a request is refused with a 400 that says so rather than
silently turned into a chat turn.

The exact cache and dedup act on it as on chat (their settings, per route; a streamed
request and a whole one share a cache entry, replayed in the text-completion shape), and
spend admission (key limits, budgets, rate limits) reserves before the call. The levers
that read or rewrite chat messages (semantic cache, compression, cap, routing) do not act
on raw text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from thrifty.cache.redis_budget import start_request as start_redis_budget
from thrifty.config import DEFAULT_BASE_URLS, ModelConfig
from thrifty.errors import BadRequest, NotFound, ThriftyError, Unauthorized, UpstreamError
from thrifty.gateway import Gateway
from thrifty.ledger.prices import pricer
from thrifty.ledger.tokens import count_text
from thrifty.pipeline.pipeline import Pipeline
from thrifty.protocol.errors import truncate
from thrifty.protocol.openai import usage_from_openai
from thrifty.providers.transport import post, reading, sse_events
from thrifty.server.app import _FORWARDED, EventWriter, Handlers, parse_tags
from thrifty.server.guard import KEYS, error_response
from thrifty.types import Context, EventStream, Reply, SSEEvent, Usage

__all__ = ["setup"]

log = logging.getLogger(__name__)


def _check_prompt(prompt: Any) -> None:
    def tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)

    if isinstance(prompt, str) or tokens(prompt):
        return
    if isinstance(prompt, list) and prompt and (all(isinstance(p, str) for p in prompt) or all(tokens(p) for p in prompt)):
        return
    raise BadRequest("'prompt' must be a string, an array of strings, token ids or arrays of token ids", "prompt")


#: The levers that act on text completions: the others read or rewrite chat messages.
LEVERS = ("cache", "dedup")


class CompletionsHandlers:
    def __init__(self, gateway: Gateway, handlers: Handlers) -> None:
        self.gateway = gateway
        self.h = handlers
        self._pipeline: Pipeline | None = None

    @property
    def pipeline(self) -> Pipeline:
        """The exact cache and dedup (as configured for chat) in front of the upstream call."""
        if self._pipeline is None:
            main = self.gateway.pipeline
            assert main is not None
            self._pipeline = Pipeline([lever for lever in main.levers if lever.name in LEVERS], self._call,
                                      main.overrides)
        return self._pipeline

    def _target(self, body: dict[str, Any]) -> ModelConfig:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("missing required field 'model'", "model")
        if not self.gateway.config.has_model(model):
            known = ", ".join(m.name for m in self.gateway.config.models) or "none"
            raise NotFound(f"the model {truncate(model)!r} is not configured in thrifty (configured: {known})",
                           param="model", code="model_not_found")
        cfg = self.gateway.config.model(model)
        protocol = self.gateway.providers[cfg.name].protocol
        if protocol != "openai" or cfg.provider == "local":
            raise BadRequest(f"model {cfg.name!r} ({cfg.provider}) has no legacy text completions; "
                             "send it /v1/chat/completions instead", "model")
        _check_prompt(body.get("prompt"))
        if not isinstance(body.get("stream", False), bool):
            raise BadRequest("'stream' must be a boolean", "stream")
        return cfg

    async def create(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        start_redis_budget()
        principal = await self.h.principal(request)
        if principal is None:
            return error_response("openai", Unauthorized("missing or invalid thrifty key", code="invalid_api_key"))
        try:
            body = await self.h._read_json(request)
            cfg = self._target(body)
            tags = parse_tags(request.headers.get("X-Thrifty-Tags"), None)
        except ThriftyError as exc:
            return error_response("openai", exc)
        ctx = Context(protocol="openai", body=body, config=self.gateway.config, key_name=principal.name,
                      tenant=principal.tenant, tags=tags, requested_model=cfg.name, target_model=cfg.name,
                      headers={k.lower(): v for k, v in request.headers.items() if k.lower() in _FORWARDED},
                      endpoint="completions")
        ctx.extra["endpoint"] = "completions"
        if self.gateway.config.ledger.store_bodies:
            ctx.original_body = body
        refused = await self.h.admit(ctx, principal, "openai")
        if refused is not None:
            return refused
        reply = await self.h.run(self.pipeline, ctx, "openai", started)
        if isinstance(reply, web.Response):
            return reply
        headers = self.h._reply_headers(ctx, reply)
        if reply.stream is None:
            self.h._record(ctx, reply, 200, "ok", None, started, None)
            return web.Response(body=orjson.dumps(reply.body), content_type="application/json", headers=headers)
        return await self._relay(request, ctx, reply, headers, started)

    # -- the upstream call: the pipeline's terminal ---------------------------------------

    async def _call(self, ctx: Context) -> Reply:
        body = ctx.body
        cfg = self.gateway.config.model(ctx.target_model)
        upstream = {**body, "model": cfg.upstream_model}
        streaming = bool(body.get("stream"))
        if streaming:  # always ask for usage, so the ledger is exact; hidden from a client that did not ask
            options = body.get("stream_options")
            upstream["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        key = cfg.api_key()
        headers = {"Content-Type": "application/json", **cfg.headers}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = (cfg.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/") + "/completions"
        reply = Reply(served_model=cfg.name, provider=cfg.provider)
        if pricer.rates(cfg).source == "unknown":  # billed $0: the row says why, never silently
            ctx.extra["price_unknown"] = f"no price known for {cfg.upstream_model!r} ({cfg.provider}); set price: on it"
        answer = await post(cfg.name, url, upstream, headers, streaming=streaming, timeout=cfg.timeout,
                            connect_timeout=cfg.connect_timeout, secret=key)
        if isinstance(answer, dict):
            if not isinstance(answer.get("choices"), list):
                raise UpstreamError(502, f"model {cfg.name!r} answered without a 'choices' list, a shape the "
                                    "completions API does not document", error_type="api_error")
            reply.body = answer
            reply.usage = self._usage(answer.get("usage"), body, answer)
            reply.cost = pricer.cost(cfg, reply.usage)
            return reply
        stream: EventStream = EventStream(self._events(ctx, cfg, reply, answer, lambda: stream))
        reply.stream = stream
        return reply

    async def _events(self, ctx: Context, cfg: ModelConfig, reply: Reply, resp: aiohttp.ClientResponse,
                      holder: Any) -> AsyncIterator[SSEEvent]:
        stream: EventStream = holder()
        texts: list[str] = []
        usage: Any = None
        try:
            async with reading(resp, stream, cfg.name):
                async for ev in sse_events(resp):
                    data = ev.data
                    if data == "[DONE]":
                        stream.complete = True
                    elif isinstance(data, dict):
                        if data.get("usage"):
                            usage = data["usage"]
                        for choice in data.get("choices") or []:
                            if isinstance(choice, dict):
                                texts.append(str(choice.get("text") or ""))
                    yield ev
        finally:
            if usage is not None:
                stream.usage = usage_from_openai(usage)
            else:  # cut short: estimate what was consumed, and say so
                stream.usage = Usage(input_tokens=count_text(_prompt_text(ctx.body)),
                                     output_tokens=count_text("".join(texts)), estimated=True)
            reply.usage = stream.usage
            reply.cost = pricer.cost(cfg, stream.usage)

    def _usage(self, usage: Any, body: dict[str, Any], answer: dict[str, Any]) -> Usage:
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            return usage_from_openai(usage)
        text = "".join(str(c.get("text", "")) for c in answer.get("choices") or [] if isinstance(c, dict))
        return Usage(input_tokens=count_text(_prompt_text(body)), output_tokens=count_text(text), estimated=True)

    async def _relay(self, request: web.Request, ctx: Context, reply: Reply, headers: dict[str, str],
                     started: float) -> web.StreamResponse:
        stream = reply.stream
        assert stream is not None
        options = ctx.body.get("stream_options")
        wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        async def body(out: EventWriter) -> tuple[str, str | None]:
            async for ev in stream:
                data = ev.data
                if isinstance(data, dict) and data.get("usage") and not data.get("choices") and not wants_usage:
                    continue
                await out.write(ev)
            if not stream.complete:
                await out.write(_error_event(stream.error or "stream cut"))
                return "partial", stream.error
            return "ok", None

        return await self.h.relay_sse(request, ctx, reply, headers, started, body, _error_event)


def _prompt_text(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()


def _error_event(message: str) -> Any:
    from thrifty.protocol.errors import error_event

    return error_event("openai", UpstreamError(502, message, error_type="api_error", code="upstream_stream_error"))


def setup(app: web.Application, gateway: Gateway) -> None:
    """Add /v1/completions (and /completions)."""
    handlers = CompletionsHandlers(gateway, Handlers(gateway, app[KEYS]))
    app.router.add_post("/v1/completions", handlers.create)
    app.router.add_post("/completions", handlers.create)
