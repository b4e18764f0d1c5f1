"""The last stage: send the request to its provider, with retries, fallbacks and a breaker.

Translates between the client's protocol and the provider's, prices the reply, and makes
sure a stream that is cut short still leaves usage behind (estimated if the provider gave
none) so the ledger never under-bills.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from thrifty.config import ModelConfig, lever_model
from thrifty.errors import TranslationError, UpstreamError
from thrifty.health import Health
from thrifty.ledger.prices import pricer
from thrifty.ledger.tokens import estimate_body_output_tokens, estimate_output_tokens
from thrifty.ledger.usage_check import check_usage
from thrifty.protocol import translate
from thrifty.protocol.responses_native import event_text as responses_event_text
from thrifty.protocol.settings import TranslationSettings
from thrifty.providers.base import Provider
from thrifty.providers.breaker import CircuitBreaker
from thrifty.types import Context, EventStream, NativeResponses, Reply, SSEEvent, Usage, Wire

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

__all__ = ["Dispatcher", "translate_request", "translate_response"]

log = logging.getLogger(__name__)

#: Never sleep longer than this for one retry, whatever Retry-After says; past it, report.
MAX_RETRY_WAIT = 30.0


def translate_request(src: Wire, dst: Wire, body: dict[str, Any],
                      default_max_tokens: int = translate.DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    if src == dst:
        return body
    if src == "openai":
        return translate.openai_request_to_anthropic(body, default_max_tokens)
    return translate.anthropic_request_to_openai(body)


def translate_response(src: Wire, dst: Wire, body: dict[str, Any]) -> dict[str, Any]:
    if src == dst:
        return body
    if src == "anthropic":
        return translate.anthropic_response_to_openai(body)
    return translate.openai_response_to_anthropic(body)


def _stream_translator(src: Wire, dst: Wire, include_usage: bool) -> Any:
    if src == dst:
        return None
    if src == "anthropic":
        return translate.AnthropicToOpenAIStream(include_usage=include_usage)
    return translate.OpenAIToAnthropicStream()


def _event_text(ev: SSEEvent) -> str:
    data = ev.data
    if not isinstance(data, dict):
        return ""
    if str(data.get("type", "")).startswith("response."):  # a Responses event, passed through
        return responses_event_text(data)
    if "choices" in data:
        parts = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            parts.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or ():
                parts.append((call.get("function") or {}).get("arguments") or "")
        return "".join(parts)
    delta = data.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or "")
    return ""


class Dispatcher:
    """Sends requests to providers on behalf of the pipeline (its terminal handler)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.breakers: dict[str, CircuitBreaker] = {
            m.name: CircuitBreaker(m.breaker_failures, m.breaker_cooldown, Health(f"upstream {m.name}", log))
            for m in gateway.config.models
        }
        self.default_max_tokens = lever_model(gateway.config, "translation", TranslationSettings).default_max_tokens

    def __call__(self, ctx: Context) -> Awaitable[Reply]:
        return self.send(ctx, ctx.target_model or ctx.requested_model, ctx.body, responses=ctx.responses)

    async def send(self, ctx: Context, model: str, body: dict[str, Any], protocol: Wire | None = None,
                   responses: NativeResponses | None = None) -> Reply:
        """Send `body` (in `protocol`, default the client's) to `model`, then its fallbacks.

        With `responses` (a `/v1/responses` request), a provider that serves the Responses API
        itself gets that request as is, and answers a `response` object (or its events);
        any other gets `body`, the chat form, unless the request holds what chat cannot say."""
        protocol = protocol or ctx.protocol
        config = self.gateway.config
        primary = config.model(model)
        chain = [primary.name, *primary.fallbacks]
        last: UpstreamError | None = None
        attempts: list[UpstreamError] = []
        for name in chain:
            cfg = config.model(name)
            provider = self.gateway.providers[name]
            breaker = self.breakers[name]
            if not breaker.allow():
                last = UpstreamError(
                    503,
                    f"model {name!r} is paused after repeated upstream failures; retry in {breaker.retry_in():.0f}s",
                    retryable=True,
                    retry_after=breaker.retry_in(),
                    error_type="circuit_open",
                )
                ctx.note(f"{name}: circuit open")
                continue
            passed = responses is not None and provider.speaks_responses()
            if responses is not None and not passed and responses.untranslatable:
                breaker.release()
                raise TranslationError(
                    f"model {name!r} has no Responses API of its own (provider {cfg.provider}), and "
                    f"{', '.join(responses.untranslatable)} cannot be translated for it: send it to a model that "
                    "serves the Responses API, or leave it out")
            legacy = protocol == "openai" and provider.protocol != "openai" and bool(body.get("functions"))
            try:
                if legacy and body.get("stream"):
                    raise TranslationError("legacy 'functions' cannot be streamed from this model; use 'tools'")
                if passed:
                    assert responses is not None
                    native = _native_body(responses, body)
                else:
                    native = translate_request(protocol, provider.protocol, body, self.default_max_tokens)
            except TranslationError as exc:
                breaker.release()
                raise TranslationError(f"model {name!r} speaks {provider.protocol}: {exc}") from None
            except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
                # A field of a shape the validator does not check (tools, content parts, ...):
                # the request is malformed, not thrifty.
                breaker.release()
                raise TranslationError(f"model {name!r} speaks {provider.protocol} and this request could not be "
                                       f"translated to it: a field has the wrong shape ({exc.__class__.__name__}: {exc})") from None
            try:
                reply = await self._attempt(ctx, provider, cfg, native, responses=passed)
            except UpstreamError as exc:
                if not exc.retryable:
                    breaker.release()
                    raise  # the request itself is wrong; another model would refuse it too
                breaker.failure()
                ctx.note(f"{name}: {exc.status} {exc.message}")
                attempts.append(exc)
                last = exc
                continue
            except BaseException:  # cancelled (the client left) or a bug: no verdict on the upstream
                breaker.release()
                raise
            if passed:
                ctx.extra["responses"] = "native"
            if name != primary.name:
                ctx.extra["fallback_from"] = primary.name
            if protocol == "openai" and provider.protocol == "anthropic" and not (
                    body.get("max_completion_tokens") or body.get("max_tokens")):
                reply.headers["X-Thrifty-Default-Max-Tokens"] = str(self.default_max_tokens)
            reply = self._finish(ctx, reply, provider, cfg, protocol, breaker)
            if legacy and reply.body is not None:
                reply.body = translate.legacy_function_answer(reply.body)
            return reply
        assert last is not None
        last.attempts = attempts
        raise last

    async def side_call(self, ctx: Context, model: str, body: dict[str, Any], protocol: Wire | None = None) -> Reply:
        """A call on behalf of a lever (no levers applied); its cost is added to
        `ctx.side_cost`, so the request's ledger row carries it."""
        reply = await self.send(ctx, model, body, protocol)

        def add_cost(r: Reply) -> None:
            ctx.side_cost += r.cost

        if reply.stream is None:
            add_cost(reply)
        else:
            reply.stream.on_finish(lambda _s: add_cost(reply))
        return reply

    async def _attempt(self, ctx: Context, provider: Provider, cfg: ModelConfig, body: dict[str, Any],
                       responses: bool = False) -> Reply:
        attempt = 0
        send = provider.send_responses if responses else provider.send
        while True:
            try:
                return await send(body, ctx)
            except UpstreamError as exc:
                if not exc.retryable or attempt >= cfg.max_retries:
                    raise
                wait = exc.retry_after
                if wait is None:
                    wait = random.uniform(0, cfg.retry_backoff * (2**attempt))
                if wait > MAX_RETRY_WAIT:
                    raise
                attempt += 1
                ctx.extra["retries"] = attempt
                log.info("retrying %s in %.2fs after %s (%d/%d)", cfg.name, wait, exc.status, attempt, cfg.max_retries)
                await asyncio.sleep(wait)

    def _finish(
        self,
        ctx: Context,
        reply: Reply,
        provider: Provider,
        cfg: ModelConfig,
        protocol: Wire,
        breaker: CircuitBreaker,
    ) -> Reply:
        reply.served_model = cfg.name
        reply.provider = cfg.provider
        if pricer.rates(cfg).source == "unknown":  # billed $0: the row says why, never silently
            ctx.extra["price_unknown"] = f"no price known for {cfg.upstream_model!r} ({cfg.provider}); set price: on it"
        if reply.stream is None:
            breaker.success()
            raw_usage = reply.body.get("usage") if isinstance(reply.body, dict) else None
            if reply.body is not None:
                try:
                    reply.body = translate_response(provider.protocol, protocol, reply.body)
                except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
                    raise UpstreamError(502, f"model {cfg.name!r} answered with a body of the wrong shape "
                                        f"({exc.__class__.__name__}: {exc})", error_type="api_error") from None
            if not reply.cost:
                if reply.ok and isinstance(reply.body, dict):  # reliability: usage sanity
                    body = reply.body
                    reply.usage = _sane_usage(ctx, cfg, reply.usage, raw_usage,
                                              lambda: estimate_body_output_tokens(protocol, body))
                reply.cost = pricer.cost(cfg, reply.usage)
            return reply
        options = ctx.body.get("stream_options")  # not checked on Anthropic requests: may be anything
        include_usage = protocol == "anthropic" or (isinstance(options, dict) and bool(options.get("include_usage")))
        reply.stream = self._wrap(ctx, reply, provider.protocol, protocol, include_usage, cfg, breaker)
        return reply

    def _wrap(
        self,
        ctx: Context,
        reply: Reply,
        src: Wire,
        dst: Wire,
        include_usage: bool,
        cfg: ModelConfig,
        breaker: CircuitBreaker,
    ) -> EventStream:
        inner = reply.stream
        assert inner is not None
        translator = _stream_translator(src, dst, include_usage)
        text: list[str] = []

        async def events() -> AsyncIterator[SSEEvent]:
            try:
                async for ev in inner:
                    out = translator.feed(ev) if translator is not None else [ev]
                    for item in out:
                        text.append(_event_text(item))
                        yield item
                if translator is not None and inner.complete:
                    for item in translator.finish():
                        yield item
            finally:
                await inner.aclose()
                outer.usage = inner.usage
                outer.complete = inner.complete
                outer.error = inner.error
                if inner.complete:
                    breaker.success()
                elif inner.error:
                    breaker.failure()
                else:  # the client left
                    breaker.release()
                if not outer.complete:
                    _estimate_missing_usage(ctx, outer, "".join(text))
                elif not reply.cost:  # reliability: usage sanity
                    said = outer.usage.to_dict() if cfg.provider in ("openai", "anthropic") else None
                    outer.usage = _sane_usage(ctx, cfg, outer.usage, said, lambda: estimate_output_tokens("".join(text)))
                reply.usage = outer.usage
                if not reply.cost:
                    reply.cost = pricer.cost(cfg, outer.usage)

        outer = EventStream(events())
        return outer


def _native_body(native: NativeResponses, chat: dict[str, Any]) -> dict[str, Any]:
    """The Responses request to send, with what a lever changed on the chat form that the
    Responses API can say carried over: the output limit (the cap)."""
    body = dict(native.body)
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
    if isinstance(limit, int) and limit != native.chat_limit:
        body["max_output_tokens"] = limit
    return body


def _sane_usage(ctx: Context, cfg: ModelConfig, usage: Usage, raw: Any, answer_tokens: Callable[[], int]) -> Usage:
    return check_usage(ctx, usage, raw, answer_tokens=answer_tokens, model=cfg.name, limit=cfg.max_usage_tokens)


def _estimate_missing_usage(ctx: Context, stream: EventStream, text: str) -> None:
    """A stream cut short may carry no usage, or stale usage: estimate what was consumed."""
    from thrifty.ledger.tokens import estimate_output_tokens, estimate_request_tokens

    usage = stream.usage
    estimated_out = estimate_output_tokens(text)
    if usage.total_input_tokens == 0:
        usage.input_tokens = estimate_request_tokens(ctx.protocol, ctx.body)
        usage.estimated = True
    if usage.output_tokens < estimated_out:
        usage.output_tokens = estimated_out
        usage.estimated = True



