"""`GET /metrics`: Prometheus text exposition of what the ledger records, live.

A `MetricsCollector` listens to the ledger writer (`add_listener`), so every row the ledger
gets is counted here the moment it is submitted: requests, tokens, cost, savings by lever,
cache outcomes, errors, latency histograms. Provider figures (an engine's queue depth,
active sequences, ...) come from `gateway.providers[*].stats()` at scrape time.

The exposition format is written by hand (it is a few lines of text) rather than adding a
dependency. Label sets are capped so that a flood of new model names cannot blow memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from thrifty.config import lever_model
from thrifty.gateway import Gateway
from thrifty.ledger.record import LedgerRecord

log = logging.getLogger(__name__)

#: Latency histogram bucket upper bounds, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Most label combinations per metric; the rest are counted under label value "other".
MAX_SERIES = 2000

Labels = tuple[tuple[str, str], ...]

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


class Family:
    """One metric (counter or gauge): values per label set, capped at MAX_SERIES."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.values: dict[Labels, float] = {}

    def _key(self, labels: Labels) -> Labels:
        if labels in self.values or len(self.values) < MAX_SERIES:
            return labels
        return tuple((k, "other") for k, _ in labels)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        values = self.values
        current = values.get(labels)
        if current is None:
            labels = self._key(labels)
            current = values.get(labels, 0.0)
        values[labels] = current + amount

    def set(self, labels: Labels, value: float) -> None:
        self.values[self._key(labels)] = value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, v in sorted(self.values.items()):
            yield f"{self.name}{_fmt_labels(labels)} {_num(v)}"


class Histogram:
    """A Prometheus histogram with fixed buckets, per label set."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.series: dict[Labels, list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, labels: Labels, value: float) -> None:
        s = self.series.get(labels)
        if s is None:
            if len(self.series) >= MAX_SERIES:
                labels = tuple((k, "other") for k, _ in labels)
            s = self.series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
        i = bisect_left(self.buckets, value)  # the first bucket whose bound holds the value
        if i < len(self.buckets):
            s[i] += 1
        s[-2] += 1
        s[-1] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, s in sorted(self.series.items()):
            running = 0.0  # buckets hold their own counts; the exposition format wants them cumulative
            for ub, count in zip(self.buckets, s, strict=False):
                running += count
                yield f"{self.name}_bucket{_fmt_labels(labels, (('le', _num(ub)),))} {_num(running)}"
            yield f"{self.name}_bucket{_fmt_labels(labels, (('le', '+Inf'),))} {_num(s[-2])}"
            yield f"{self.name}_count{_fmt_labels(labels)} {_num(s[-2])}"
            yield f"{self.name}_sum{_fmt_labels(labels)} {_num(s[-1])}"


class _RecordLabels:
    """The label sets one (model, route, outcome) combination uses."""

    __slots__ = ("model", "model_route", "request", "route")

    def __init__(self, model: str, route: str, outcome: str) -> None:
        self.model = ("model", model)
        self.route = (("route", route),)
        self.model_route = (self.model, ("route", route))
        self.request = (self.model, ("route", route), ("outcome", outcome))


class MetricsCollector:
    """Counts ledger records as they are submitted; `render()` writes the exposition text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Family("thrifty_requests_total", "counter", "Requests, by model served, route and outcome.")
        self.tokens = Family("thrifty_tokens_total", "counter", "Tokens billed, by model and kind.")
        self.cost = Family("thrifty_cost_usd_total", "counter", "Actual cost in USD, by model and route.")
        self.counterfactual = Family(
            "thrifty_counterfactual_cost_usd_total", "counter", "What the requests would have cost with no lever, USD."
        )
        self.saved = Family("thrifty_saved_usd_total", "counter", "USD saved, by lever.")
        self.tokens_saved = Family("thrifty_tokens_saved_total", "counter", "Tokens saved, by lever.")
        self.cache = Family("thrifty_cache_requests_total", "counter", "Exact-cache lookups, by result (hit, miss, bypass).")
        self.answered = Family(
            "thrifty_answered_without_provider_total", "counter", "Requests answered by a lever, by lever."
        )
        self.errors = Family("thrifty_errors_total", "counter", "Requests that ended with an error status, by status.")
        self.rerouted = Family("thrifty_rerouted_total", "counter", "Requests served by another model than requested.")
        self.implausible = Family("thrifty_usage_implausible_total", "counter",
                                  "Answers whose reported usage was implausible (flagged, priced from an estimate).")
        self.latency = Histogram("thrifty_request_duration_seconds", "Time from request to last byte, by route.")
        self.ttfb = Histogram("thrifty_time_to_first_byte_seconds", "Streaming: time to the first byte, by route.")
        #: Label tuples by (model, route, outcome), built once: requests repeat them endlessly.
        self._labels: dict[tuple[str, str, str], _RecordLabels] = {}
        self.families = [
            self.requests, self.tokens, self.cost, self.counterfactual, self.saved, self.tokens_saved,
            self.cache, self.answered, self.errors, self.rerouted, self.implausible,
        ]  # fmt: skip

    def observe(self, r: LedgerRecord) -> None:
        """Count one ledger record (a LedgerWriter listener: called on the submitting thread)."""
        model = r.served_model or r.requested_model
        key = (model, r.route, r.outcome)
        labels = self._labels.get(key)
        if labels is None:
            labels = _RecordLabels(model, r.route, r.outcome)
            if len(self._labels) < MAX_SERIES:  # routes come from clients' tags: keep the cache bounded
                self._labels[key] = labels
        with self._lock:
            self.requests.inc(labels.request)
            for kind, n in (
                ("input", r.input_tokens), ("cache_read", r.cache_read_tokens),
                ("cache_write", r.cache_write_tokens + r.cache_write_1h_tokens),
                ("output", r.output_tokens), ("reasoning", r.reasoning_tokens),
            ):  # fmt: skip
                if n:
                    self.tokens.inc((labels.model, ("kind", kind)), n)
            self.cost.inc(labels.model_route, float(r.cost))
            self.counterfactual.inc(labels.route, float(r.counterfactual_cost))
            for lever, usd in r.savings.items():
                self.saved.inc((("lever", lever),), float(usd))
            for lever, n in r.tokens_saved.items():
                self.tokens_saved.inc((("lever", lever),), n)
            if r.cache:
                self.cache.inc((("result", r.cache),))
            if r.answered_by:
                self.answered.inc((("lever", r.answered_by),))
            if r.status >= 400:
                self.errors.inc((("status", str(r.status)),))
            if "usage_implausible" in r.extra:
                self.implausible.inc((labels.model,))
            if r.served_model and r.served_model != r.requested_model:
                self.rerouted.inc((("requested", r.requested_model), ("served", r.served_model)))
            self.latency.observe(labels.route, r.latency_ms / 1000.0)
            if r.ttfb_ms is not None:
                self.ttfb.observe(labels.route, r.ttfb_ms / 1000.0)

    def render(self, gateway: Gateway | None = None) -> str:
        lines: list[str] = []
        with self._lock:
            for fam in self.families:
                lines.extend(fam.render())
            lines.extend(self.latency.render())
            lines.extend(self.ttfb.render())
        if gateway is not None:
            lines.extend(_gateway_lines(gateway))
        return "\n".join(lines) + "\n"


def _gateway_lines(gateway: Gateway) -> list[str]:
    stats = Family("thrifty_provider_stat", "gauge", "Live provider figures from Provider.stats(), by model and stat.")
    for name, provider in gateway.providers.items():
        try:
            figures: dict[str, Any] = provider.stats()
        except Exception:  # a provider's stats must never break a scrape
            continue
        for stat, value in figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                stats.set((("model", name), ("stat", stat)), float(value))
    out = list(stats.render())
    out += [
        "# HELP thrifty_in_flight_requests HTTP requests this replica is handling now (scrapes included).",
        "# TYPE thrifty_in_flight_requests gauge",
        f"thrifty_in_flight_requests {gateway.in_flight}",
        "# HELP thrifty_shed_total Requests refused at once because server.max_in_flight were in flight.",
        "# TYPE thrifty_shed_total counter",
        f"thrifty_shed_total {gateway.shed}",
    ]
    ledger = gateway.ledger
    if ledger is not None:
        out += [
            "# HELP thrifty_ledger_pending Ledger rows waiting to be written.",
            "# TYPE thrifty_ledger_pending gauge",
            f"thrifty_ledger_pending {ledger.pending}",
            "# HELP thrifty_ledger_written_total Ledger rows written since start.",
            "# TYPE thrifty_ledger_written_total counter",
            f"thrifty_ledger_written_total {ledger.written}",
            "# HELP thrifty_ledger_write_failures_total Failed ledger batch writes since start.",
            "# TYPE thrifty_ledger_write_failures_total counter",
            f"thrifty_ledger_write_failures_total {ledger.failures}",
        ]
    from thrifty.server.readiness import metric_lines

    out += metric_lines(gateway)  # dependency states, spool and Redis counters
    out += autoscaling_lines(gateway)
    return out


def autoscaling_lines(gateway: Gateway) -> list[str]:
    """What autoscalers read besides requests in flight: this replica's admission refusals, and
    the batch lane's waiting lines (the store's, so every replica reports the same number:
    scale on its max, not its sum). The local engine's queue is `thrifty_provider_stat`'s
    `queue_depth`."""
    out: list[str] = []
    spend = gateway.services.spend
    if spend is not None:
        out += ["# HELP thrifty_admission_refusals_total Requests this replica refused at admission (budgets, "
                "rate limits, concurrency), by reason.", "# TYPE thrifty_admission_refusals_total counter"]
        out += [f'thrifty_admission_refusals_total{{reason="{reason}"}} {spend.refusals.get(reason, 0)}'
                for reason in ("budget", "rate", "concurrency")]
    lane = gateway.services.batch
    if lane is not None:
        try:
            depth = lane.store.queue_depth()
        except Exception:  # the store is down: no figure rather than a failed scrape
            log.warning("metrics: batch queue depth unavailable", exc_info=True)
        else:
            out += ["# HELP thrifty_batch_queue_depth Batch lines waiting or running, over every replica.",
                    "# TYPE thrifty_batch_queue_depth gauge", f"thrifty_batch_queue_depth {depth}"]
    return out


COLLECTOR = web.AppKey("metrics_collector", MetricsCollector)


class MetricsSettings(BaseModel):
    """The `metrics:` config section."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Serve /metrics without a key (for a scraper inside a private network).
    public: bool = False
    #: OpenTelemetry traces (see thrifty.server.otel); validated there.
    otel: dict[str, Any] | None = None


def setup(app: web.Application, gateway: Gateway) -> None:
    """Register GET /metrics and count every ledger record from start-up on.

    /metrics is behind an admin key when keys are configured, unless `metrics.public: true`
    (for a Prometheus scraper inside a private network).
    """
    from thrifty.server.guard import require_admin

    settings = lever_model(gateway.config, "metrics", MetricsSettings)
    if not settings.enabled:
        return
    collector = MetricsCollector()
    app[COLLECTOR] = collector
    gateway.services.metrics = collector
    public = settings.public

    async def attach(_app: web.Application) -> None:
        if gateway.pipeline is None:  # the server's own start-up hook then skips its start
            await gateway.start()
        if gateway.ledger is not None:
            gateway.ledger.add_listener(collector.observe)

    async def metrics(request: web.Request) -> web.StreamResponse:
        if not public:
            denied = require_admin(request)
            if denied is not None:
                return denied
        text = await asyncio.to_thread(collector.render, gateway)
        return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_TYPE})

    app.on_startup.append(attach)
    app.router.add_get("/metrics", metrics)
