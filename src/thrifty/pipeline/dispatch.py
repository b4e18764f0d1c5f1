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
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from thrifty.config import ModelConfig
from thrifty.health import Health
from thrifty.ledger.prices import pricer
from thrifty.ledger.tokens import estimate_body_output_tokens, estimate_output_tokens
from thrifty.pipeline.context import Context, EventStream, Protocol, Reply, SSEEvent, Usage
from thrifty.protocol import translate
from thrifty.providers.base import Provider, UpstreamError
from thrifty.providers.breaker import CircuitBreaker

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

log = logging.getLogger("thrifty.dispatch")

#: Never sleep longer than this for one retry, whatever Retry-After says; past it, report.
MAX_RETRY_WAIT = 30.0


def translate_request(src: Protocol, dst: Protocol, body: dict[str, Any]) -> dict[str, Any]:
    if src == dst:
        return body
    if src == "openai":
        return translate.openai_request_to_anthropic(body)
    return translate.anthropic_request_to_openai(body)


def translate_response(src: Protocol, dst: Protocol, body: dict[str, Any]) -> dict[str, Any]:
    if src == dst:
        return body
    if src == "anthropic":
        return translate.anthropic_response_to_openai(body)
    return translate.openai_response_to_anthropic(body)


def _stream_translator(src: Protocol, dst: Protocol, include_usage: bool) -> Any:
    if src == dst:
        return None
    if src == "anthropic":
        return translate.AnthropicToOpenAIStream(include_usage=include_usage)
    return translate.OpenAIToAnthropicStream()


def _event_text(ev: SSEEvent) -> str:
    data = ev.data
    if not isinstance(data, dict):
        return ""
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

    def __call__(self, ctx: Context) -> Awaitable[Reply]:
        return self.send(ctx, ctx.target_model or ctx.requested_model, ctx.body)

    async def send(self, ctx: Context, model: str, body: dict[str, Any], protocol: Protocol | None = None) -> Reply:
        """Send `body` (in `protocol`, default the client's) to `model`, then its fallbacks."""
        protocol = protocol or ctx.protocol
        config = self.gateway.config
        primary = config.model(model)
        chain = [primary.name, *primary.fallbacks]
        last: UpstreamError | None = None
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
            try:
                native = translate_request(protocol, provider.protocol, body)
            except translate.TranslationError as exc:
                breaker.release()
                raise UpstreamError(400, f"model {name!r} speaks {provider.protocol}: {exc}",
                                    error_type="invalid_request_error") from None
            except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
                # A field of a shape the validator does not check (tools, content parts, ...):
                # the request is malformed, not thrifty.
                breaker.release()
                raise UpstreamError(400, f"model {name!r} speaks {provider.protocol} and this request could not be "
                                    f"translated to it: a field has the wrong shape ({exc.__class__.__name__}: {exc})",
                                    error_type="invalid_request_error") from None
            try:
                reply = await self._attempt(ctx, provider, cfg, native)
            except UpstreamError as exc:
                if not exc.retryable:
                    breaker.release()
                    raise  # the request itself is wrong; another model would refuse it too
                breaker.failure()
                ctx.note(f"{name}: {exc.status} {exc.message}")
                last = exc
                continue
            except BaseException:  # cancelled (the client left) or a bug: no verdict on the upstream
                breaker.release()
                raise
            if name != primary.name:
                ctx.extra["fallback_from"] = primary.name
            return self._finish(ctx, reply, provider, cfg, protocol, breaker)
        assert last is not None
        raise last

    async def _attempt(self, ctx: Context, provider: Provider, cfg: ModelConfig, body: dict[str, Any]) -> Reply:
        attempt = 0
        while True:
            try:
                return await provider.send(body, ctx)
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
        protocol: Protocol,
        breaker: CircuitBreaker,
    ) -> Reply:
        reply.served_model = cfg.name
        reply.provider = cfg.provider
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
        src: Protocol,
        dst: Protocol,
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


def _sane_usage(ctx: Context, cfg: ModelConfig, usage: Usage, raw: Any, answer_tokens: Callable[[], int]) -> Usage:
    from thrifty.ledger.usage_check import check_usage

    limit = cfg.options.get("max_usage_tokens")
    return check_usage(ctx, usage, raw, answer_tokens=answer_tokens, model=cfg.name,
                       limit=limit if isinstance(limit, int) and limit > 0 else None)


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


async def dispatch_to(gateway: Gateway, ctx: Context, model: str, body: dict[str, Any], protocol: Protocol | None = None) -> Reply:
    """A side call on behalf of a stage; its cost is added to the request's ledger row."""
    dispatcher: Dispatcher = gateway.state["dispatcher"]
    reply = await dispatcher.send(ctx, model, body, protocol)

    def add_cost(r: Reply) -> None:
        ctx.extra["side_cost"] = str(Decimal(ctx.extra.get("side_cost", "0")) + r.cost)

    if reply.stream is None:
        add_cost(reply)
    else:
        reply.stream.on_finish(lambda _s: add_cost(reply))
    return reply
