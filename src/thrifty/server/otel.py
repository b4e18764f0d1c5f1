"""Optional OpenTelemetry traces: one span per request, following the GenAI semantic conventions.

Spans are made from ledger records (a `LedgerWriter` listener), so they carry what the
ledger knows: the model asked for and the one that served, tokens, finish reason, error
type, plus thrifty's own cost, saving and cache outcome. They are batched and exported off
the request path by the OpenTelemetry SDK.

Config (off unless present):

    metrics:
      otel:
        exporter: otlp            # otlp (HTTP/protobuf) | console | memory (tests)
        endpoint: http://127.0.0.1:4318/v1/traces
        service_name: thrifty

Needs `pip install 'thrifty[otel]'` (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from thrifty.config import ConfigError
from thrifty.gateway import Gateway
from thrifty.ledger.record import LedgerRecord


class OtelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exporter: Literal["otlp", "console", "memory"] = "otlp"
    endpoint: str | None = None
    service_name: str = "thrifty"


def span_attributes(r: LedgerRecord) -> dict[str, Any]:
    """GenAI semantic-convention attributes (and thrifty.* ones) for a ledger record."""
    provider = "anthropic" if r.protocol == "anthropic" and not r.provider else (r.provider or r.protocol)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": r.requested_model,
        "gen_ai.response.model": r.served_model or r.requested_model,
        "gen_ai.usage.input_tokens": r.input_tokens + r.cache_read_tokens + r.cache_write_tokens + r.cache_write_1h_tokens,
        "gen_ai.usage.output_tokens": r.output_tokens,
        "thrifty.request_id": r.request_id,
        "thrifty.route": r.route,
        "thrifty.outcome": r.outcome,
        "thrifty.cost_usd": float(r.cost),
        "thrifty.counterfactual_cost_usd": float(r.counterfactual_cost),
        "http.response.status_code": r.status,
    }
    if r.finish_reason:
        attrs["gen_ai.response.finish_reasons"] = [r.finish_reason]
    if r.cache_read_tokens:
        attrs["gen_ai.usage.cache_read.input_tokens"] = r.cache_read_tokens
    if r.feature:
        attrs["thrifty.feature"] = r.feature
    if r.key_name:
        attrs["thrifty.key"] = r.key_name
    if r.task:
        attrs["thrifty.task"] = r.task
    if r.cache:
        attrs["thrifty.cache"] = r.cache
    if r.answered_by:
        attrs["thrifty.answered_by"] = r.answered_by
    for lever, usd in r.savings.items():
        attrs[f"thrifty.saved_usd.{lever}"] = float(usd)
    if r.status >= 400:
        attrs["error.type"] = str(r.status)
    return attrs


class SpanMaker:
    """Turns ledger records into finished spans on `tracer_provider`."""

    def __init__(self, tracer_provider: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._tracer = tracer_provider.get_tracer("thrifty")
        self._kind, self._status, self._code = SpanKind.CLIENT, Status, StatusCode

    def __call__(self, r: LedgerRecord) -> None:
        start = int(r.ts * 1e9)
        span = self._tracer.start_span(
            f"chat {r.requested_model}", kind=self._kind, start_time=start, attributes=span_attributes(r)
        )
        if r.status >= 400:
            span.set_status(self._status(self._code.ERROR, r.error or str(r.status)))
        span.end(end_time=start + int(r.latency_ms * 1e6))


def tracer_provider(settings: OtelSettings) -> tuple[Any, Any]:
    """A TracerProvider exporting per `settings`, and its exporter."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ConfigError(
            "metrics.otel is set but OpenTelemetry is not installed: pip install 'thrifty[otel]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    exporter: Any
    if settings.exporter == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.exporter == "console":
        exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError("metrics.otel.exporter otlp needs: pip install opentelemetry-exporter-otlp-proto-http") from None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint) if settings.endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def setup(app: web.Application, gateway: Gateway) -> None:
    raw = gateway.config.section("metrics").get("otel")
    if not raw:
        return
    try:
        settings = OtelSettings.model_validate(raw)
    except Exception as exc:
        raise ConfigError(f"{gateway.config.source or 'config'}: metrics.otel: {exc}") from None
    provider, exporter = tracer_provider(settings)
    gateway.services.otel = (provider, exporter)
    maker = SpanMaker(provider)

    async def attach(_app: web.Application) -> None:
        if gateway.pipeline is None:
            await gateway.start()
        if gateway.ledger is not None:
            gateway.ledger.add_listener(maker)

    async def shutdown(_app: web.Application) -> None:
        provider.shutdown()

    app.on_startup.append(attach)
    app.on_cleanup.append(shutdown)
