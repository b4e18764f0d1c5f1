"""Shadow evaluation: measure in production what each lever costs in quality, and act on it.

For a sampled share of a route's live requests on which some lever acted (a cache answered,
the router picked a cheaper model, compression trimmed the prompt...), the request is run a
second time in the background, never delaying the client:
- `mode: reference` sends the client's original body straight to `reference_model` (no
  levers at all);
- `mode: lever_off` runs the pipeline again with the levers that acted switched off
  (`ctx.levers_off`; the pipeline's guard keeps them out of the rerun).
The route's grader then scores the served answer against that reference answer (a judge
with a rubric, embedding similarity, numeric agreement...). The reference counts as quality
1, so a lever's quality delta on a sample is `1 - score`; each lever that acted on the
request is charged the delta. Rows go to the `shadow_results` table.

When a lever's mean delta over its last `window` samples on a route exceeds the route's
`tolerance` with at least `min_samples` samples, the lever is turned off for that route:
`(route, lever)` joins `gateway.overrides` (kept in `shadow_disabled`, so a
restart keeps it off), the event is logged at WARNING and POSTed to `webhook`. The state is
in `thrifty.evals.shadow.snapshot(gateway)` and at `GET /v1/thrifty/shadow` (admin key);
`POST /v1/thrifty/shadow/enable {"route", "lever"}` turns a lever back on.

Config (`shadow:` with `routes.<route>.shadow:` overrides):

    shadow:
      sample: 0.05             # share of eligible requests to shadow
      reference_model: gpt-4o  # a configured model; omit for mode lever_off
      grader: {type: judge, model: gpt-4o, rubric: "Is the answer as correct and complete as the reference?"}
      tolerance: 0.05          # largest tolerated mean quality drop (0.05 = 5 points)
      min_samples: 30
      webhook: https://hooks.example.com/thrifty
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thrifty.errors import ConfigError
from thrifty.evals.graders import GraderSpecError, Services, grade, validate_spec
from thrifty.migrations import Migration
from thrifty.pipeline.lever import Lever
from thrifty.protocol.view import answer_text, last_user_text
from thrifty.sqldb import SQLDatabase
from thrifty.types import Context, Handler, Reply
from thrifty.urls import sqlite_path, store_url

if TYPE_CHECKING:
    from aiohttp import web

    from thrifty.gateway import Gateway

log = logging.getLogger(__name__)


class ShadowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sample: float = Field(default=0.0, ge=0, le=1)
    reference_model: str | None = None
    mode: Literal["reference", "lever_off"] | None = None
    #: grades the served answer with the reference answer as `expected`
    grader: dict[str, Any] = Field(default_factory=lambda: {"type": "embedding", "threshold": 0.85})
    tolerance: float = Field(default=0.05, ge=0, le=1)
    min_samples: int = Field(default=30, ge=1)
    window: int = Field(default=200, ge=1)
    webhook: str | None = None
    #: levers to watch; default every lever that acts
    levers: list[str] | None = None
    #: SQLite file or store URL for the shadow tables; default the ledger's store (SQLite or
    #: PostgreSQL, where replicas share them), else thrifty-shadow.db
    db: str | None = None
    max_in_flight: int = Field(default=8, ge=1)
    timeout: float = Field(default=120.0, gt=0)

    @field_validator("grader")
    @classmethod
    def _grader(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            validate_spec(v, check_expected=False)
        except GraderSpecError as exc:
            raise ValueError(str(exc)) from None
        return v

    @property
    def effective_mode(self) -> str:
        return self.mode or ("reference" if self.reference_model else "lever_off")


def _sqlite_path(url: str) -> str | None:
    """The ledger's SQLite file, if it has one (not in memory)."""
    path = sqlite_path(url)
    return None if path == ":memory:" else path


def _schema(dialect: str) -> tuple[str, ...]:
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"  # a unix time needs 8 bytes
    return (
        f"""CREATE TABLE IF NOT EXISTS shadow_results (
            ts {real} NOT NULL, request_id TEXT NOT NULL, route TEXT NOT NULL, lever TEXT NOT NULL,
            mode TEXT NOT NULL, reference TEXT NOT NULL, served_model TEXT NOT NULL, status TEXT NOT NULL,
            score {real}, delta {real}, detail TEXT NOT NULL, shadow_cost_usd {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS shadow_results_rl ON shadow_results (route, lever, ts)",
        f"""CREATE TABLE IF NOT EXISTS shadow_disabled (
            route TEXT NOT NULL, lever TEXT NOT NULL, ts {real} NOT NULL, mean_delta {real} NOT NULL,
            samples INTEGER NOT NULL, tolerance {real} NOT NULL, PRIMARY KEY (route, lever))""",
    )


#: The shadow tables' schema history (see `thrifty.migrations`).
SHADOW_MIGRATIONS = (Migration("shadow_0001_initial", _schema),)


def shadow_location(settings_db: str | None, store_url: str) -> str:
    """Where the shadow tables live: `shadow.db` if set, else the ledger's store (so replicas
    on PostgreSQL share one disabled set), else `thrifty-shadow.db` beside an in-memory ledger."""
    if settings_db:
        return settings_db
    if store_url.startswith(("postgres://", "postgresql://")):
        return store_url
    return _sqlite_path(store_url) or "thrifty-shadow.db"


class ShadowStore:
    """The shadow tables: a SQLite file or a store URL (SQLite or PostgreSQL). Blocking: call
    from a thread."""

    def __init__(self, where: str) -> None:
        self.path = where
        self._db = SQLDatabase(store_url(where), "shadow", SHADOW_MIGRATIONS)

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self._db.run("INSERT INTO shadow_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def recent(self, window: int) -> dict[tuple[str, str], list[float]]:
        """The last `window` graded deltas of every (route, lever), oldest first."""
        rows = self._db.run("SELECT route, lever, delta FROM shadow_results WHERE delta IS NOT NULL ORDER BY ts")
        out: dict[tuple[str, str], list[float]] = {}
        for route, lever, delta in rows:
            out.setdefault((route, lever), []).append(delta)
        return {k: v[-window:] for k, v in out.items()}

    def disabled(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows = self._db.run("SELECT route, lever, ts, mean_delta, samples, tolerance FROM shadow_disabled")
        return {(r, lv): {"ts": ts, "mean_delta": d, "samples": n, "tolerance": t} for r, lv, ts, d, n, t in rows}

    def set_disabled(self, route: str, lever: str, info: dict[str, Any] | None) -> None:
        if info is None:
            self._db.run("DELETE FROM shadow_disabled WHERE route = ? AND lever = ?", (route, lever))
        else:
            self._db.run(
                "INSERT INTO shadow_disabled VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (route, lever) DO UPDATE SET "
                "ts = excluded.ts, mean_delta = excluded.mean_delta, samples = excluded.samples, "
                "tolerance = excluded.tolerance",
                (route, lever, info["ts"], info["mean_delta"], info["samples"], info["tolerance"]),
            )

    def close(self) -> None:
        self._db.close()


@dataclass
class LeverStats:
    deltas: deque[float]
    ungraded: int = 0
    disabled: dict[str, Any] | None = None

    @property
    def mean(self) -> float | None:
        return sum(self.deltas) / len(self.deltas) if self.deltas else None


@dataclass
class ShadowMonitor:
    """Per (route, lever) quality deltas, and the levers it turned off (in `gateway.overrides`)."""

    gateway: Gateway
    store: ShadowStore
    window: int = 200
    stats: dict[tuple[str, str], LeverStats] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))

    def _stats(self, route: str, lever: str) -> LeverStats:
        key = (route, lever)
        if key not in self.stats:
            self.stats[key] = LeverStats(deque(maxlen=self.window))
        return self.stats[key]

    def load(self) -> None:
        """Restore recent deltas and the disabled set from the store (blocking)."""
        for key, deltas in self.store.recent(self.window).items():
            self._stats(*key).deltas.extend(deltas)
        for key, info in self.store.disabled().items():
            self._stats(*key).disabled = info
            self.gateway.overrides.disable(*key)

    def observe(self, route: str, lever: str, delta: float | None, settings: ShadowSettings) -> dict[str, Any] | None:
        """Add one sample; returns the disable event if this sample crossed the tolerance."""
        st = self._stats(route, lever)
        if delta is None:
            st.ungraded += 1
            return None
        st.deltas.append(delta)
        mean = st.mean
        if st.disabled is not None or mean is None or len(st.deltas) < settings.min_samples:
            return None
        if mean <= settings.tolerance:
            return None
        info = {"ts": time.time(), "mean_delta": mean, "samples": len(st.deltas), "tolerance": settings.tolerance}
        st.disabled = info
        self.gateway.overrides.disable(route, lever)
        event = {"event": "lever_disabled", "route": route, "lever": lever, **info}
        self.events.append(event)
        return event

    def enable(self, route: str, lever: str) -> bool:
        st = self.stats.get((route, lever))
        was = self.gateway.overrides.enable(route, lever)
        if st is not None:
            st.disabled = None
            st.deltas.clear()  # judge the lever afresh
        self.events.append({"event": "lever_enabled", "route": route, "lever": lever, "ts": time.time()})
        return was

    def snapshot(self) -> dict[str, Any]:
        """For the dashboard: per route and lever, samples, mean delta and whether it is off."""
        levers = []
        for (route, lever), st in sorted(self.stats.items()):
            levers.append({
                "route": route, "lever": lever, "samples": len(st.deltas), "ungraded": st.ungraded,
                "mean_delta": st.mean, "disabled": st.disabled is not None, "disabled_info": st.disabled,
            })  # fmt: skip
        return {
            "levers": levers,
            "disabled": [list(k) for k in self.gateway.overrides.pairs()],
            "events": list(self.events),
        }




#: Levers that answer from answers already given; off in every lever-off rerun.
REUSING_LEVERS = frozenset({"cache", "semantic_cache", "dedup"})


class ShadowStage(Lever[ShadowSettings]):
    """The shadow lever. It sits first on the request path, so that it sees the body as the
    client sent it and the reply as the client gets it; it only ever reads both. It samples
    client traffic only (`client_only`): never its own reruns, never eval runs."""

    name = "shadow"
    Settings = ShadowSettings
    client_only = True

    def __init__(self, gateway: Gateway, store: ShadowStore | None = None) -> None:
        super().__init__(gateway)
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random()
        self.monitor: ShadowMonitor

    def enabled(self, traffic: str) -> bool:
        s = self.settings(traffic)
        return s.enabled and s.sample > 0

    def start(self) -> None:
        default = self.settings("default")
        for traffic in self.traffic_classes(self.config):
            model = self.settings(traffic).reference_model
            if model and not self.config.has_model(model):
                raise ConfigError(f"shadow.reference_model {model!r} is not a configured model")
        store = self._store or ShadowStore(shadow_location(default.db, self.config.store))
        self.monitor = ShadowMonitor(self.gateway, store, window=default.window)
        self.monitor.load()
        self.gateway.services.shadow = self

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        settings = self.settings(ctx.traffic)
        if ctx.stream:
            return await next(ctx)
        original = copy.deepcopy(ctx.body)
        reply = await next(ctx)
        if not reply.ok or reply.body is None or reply.stream is not None:
            return reply
        # savings are kept per lever or per part of one ("compress.trim"): judge the lever
        acted = {key.split(".", 1)[0] for key in ctx.savings}
        if ctx.answered_by is not None:
            acted.add(ctx.answered_by.value)
        if settings.levers is not None:
            acted &= set(settings.levers)
        if not acted or self._random.random() >= settings.sample or len(self._tasks) >= settings.max_in_flight:
            return reply
        served_text = answer_text(reply.body)
        ctx.extra["shadow_sampled"] = True  # lands in this request's ledger row
        task = asyncio.create_task(
            self._shadow(ctx, original, served_text, reply.served_model or ctx.target_model, sorted(acted), settings)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return reply

    async def _shadow(
        self, ctx: Context, original: dict[str, Any], served: str, served_model: str, levers: list[str],
        settings: ShadowSettings,
    ) -> None:  # fmt: skip
        try:
            await asyncio.wait_for(self._compare(ctx, original, served, served_model, levers, settings), settings.timeout)
        except Exception:
            log.exception("shadow evaluation of %s failed", ctx.request_id)

    def _side_context(self, ctx: Context, body: dict[str, Any]) -> Context:
        return Context(protocol=ctx.protocol, body=body, config=ctx.config, tenant=ctx.tenant, tags=dict(ctx.tags),
                       requested_model=str(body.get("model", "")), origin="shadow")

    async def _compare(
        self, ctx: Context, original: dict[str, Any], served: str, served_model: str, levers: list[str],
        settings: ShadowSettings,
    ) -> None:  # fmt: skip
        mode = settings.effective_mode
        body = copy.deepcopy(original)
        started = time.perf_counter()
        if mode == "reference":
            assert settings.reference_model is not None
            body["model"] = settings.reference_model
            side = self._side_context(ctx, body)
            ref_reply = await self.gateway.call_model(side, settings.reference_model, body)
            reference = settings.reference_model
        else:
            side = self._side_context(ctx, body)
            # The reference is a fresh answer: besides the levers that acted, the ones that
            # reuse answers (caches, dedup) stand aside too, or the rerun would be served the
            # very answer it is meant to judge.
            side.levers_off = frozenset(levers) | REUSING_LEVERS
            assert self.gateway.pipeline is not None
            ref_reply = await self.gateway.pipeline(side)
            reference = "levers_off:" + ",".join(levers)
        if not ref_reply.ok or ref_reply.body is None:
            g_status, score, detail = "ungraded", None, f"reference call failed with status {ref_reply.status}"
        else:
            ref_text = answer_text(ref_reply.body)
            services = Services(judge=self._judge(side), judge_model=settings.reference_model)
            g = await grade(settings.grader, served, ref_text, prompt=last_user_text(original), services=services)
            g_status, score, detail = g.status, g.score, g.detail
        # side_cost holds the reference call (reference mode) and any judge calls; a lever-off
        # rerun through the pipeline carries its own cost on the reply
        cost = side.side_cost + (ref_reply.cost if mode != "reference" else 0)
        delta = None if score is None else 1.0 - score
        now = time.time()
        rows = [
            (now, ctx.request_id, ctx.traffic, lever, mode, reference, served_model, g_status, score, delta,
             detail[:500], float(cost) / len(levers))
            for lever in levers
        ]  # fmt: skip
        await asyncio.to_thread(self.monitor.store.add, rows)
        self._ledger(ctx, side, ref_reply, reference, cost, started, g_status, delta)
        for lever in levers:
            event = self.monitor.observe(ctx.traffic, lever, delta, settings)
            if event is not None:
                await self._on_disable(event, settings)

    def _ledger(
        self, ctx: Context, side: Context, reply: Reply, reference: str, cost: Decimal, started: float,
        status: str, delta: float | None,
    ) -> None:  # fmt: skip
        """Shadow calls cost real money: they get their own ledger row, tagged `shadow`."""
        ledger = self.gateway.ledger
        if ledger is None:
            return
        from thrifty.ledger.record import LedgerRecord

        usage = reply.usage
        ledger.submit(LedgerRecord(
            request_id=ctx.request_id + "-shadow", ts=side.started, protocol=side.protocol,
            requested_model=side.requested_model, served_model=reply.served_model or side.requested_model,
            provider=reply.provider, status=reply.status, outcome="ok" if reply.ok else "error",
            key_name=ctx.key_name, tenant=ctx.tenant, route=ctx.traffic, feature=ctx.tags.get("feature"),
            tags={**ctx.tags, "shadow": reference}, input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens, output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens, usage_estimated=usage.estimated, cost=cost,
            counterfactual_cost=cost, latency_ms=(time.perf_counter() - started) * 1000,
            extra={"shadow_of": ctx.request_id, "grade": status, "delta": delta},
        ))  # fmt: skip

    def _judge(self, side: Context) -> Any:
        async def call(model: str, messages: list[dict[str, Any]], timeout: float) -> str:
            body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": 512}
            judge_ctx = self._side_context(side, body)
            judge_ctx.protocol = "openai"
            reply = await asyncio.wait_for(self.gateway.call_model(judge_ctx, model, body, "openai"), timeout)
            side.side_cost += judge_ctx.side_cost
            if not reply.ok:
                raise RuntimeError(f"judge answered status {reply.status}")
            return answer_text(reply.body)

        return call

    async def _on_disable(self, event: dict[str, Any], settings: ShadowSettings) -> None:
        log.warning(
            "shadow: turning lever %s off for route %s: mean quality drop %.3f over %d samples exceeds tolerance %.3f",
            event["lever"], event["route"], event["mean_delta"], event["samples"], event["tolerance"],
        )  # fmt: skip
        info = {k: event[k] for k in ("ts", "mean_delta", "samples", "tolerance")}
        await asyncio.to_thread(self.monitor.store.set_disabled, event["route"], event["lever"], info)
        if settings.webhook:
            await post_webhook(settings.webhook, event)

    async def drain(self) -> None:
        """Wait for the shadow runs in flight (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await asyncio.to_thread(self.monitor.store.close)


async def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> bool:
    """POST `payload` as JSON; failures are logged, never raised."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, json=payload) as resp,
        ):
            if resp.status >= 400:
                log.warning("shadow webhook %s answered %d", url, resp.status)
                return False
            return True
    except Exception as exc:
        log.warning("shadow webhook %s failed: %s", url, exc)
        return False


def snapshot(gateway: Gateway) -> dict[str, Any]:
    """Shadow state for dashboards: per route and lever the samples, mean quality drop and
    whether it is off, the (route, lever) pairs turned off, and the recent events."""
    stage = gateway.services.shadow
    if stage is None:
        off = [list(k) for k in gateway.overrides.pairs()]
        return {"enabled": False, "levers": [], "disabled": off, "events": []}
    return {"enabled": True, **stage.monitor.snapshot()}


def setup(app: web.Application, gateway: Gateway) -> None:
    """HTTP: GET /v1/thrifty/shadow (state) and POST /v1/thrifty/shadow/enable (admin key)."""
    from aiohttp import web

    from thrifty.server.guard import admin_only, error_response

    async def state(request: web.Request) -> web.StreamResponse:
        return web.json_response(snapshot(gateway))

    async def enable(request: web.Request) -> web.StreamResponse:
        stage = gateway.services.shadow
        try:
            data = await request.json()
            route, lever = str(data["route"]), str(data["lever"])
        except Exception:
            return error_response("openai", 400, 'send a JSON object {"route": ..., "lever": ...}')
        was = False
        if stage is not None:
            was = stage.monitor.enable(route, lever)
            await asyncio.to_thread(stage.monitor.store.set_disabled, route, lever, None)
        else:
            was = gateway.overrides.enable(route, lever)
        return web.json_response({"route": route, "lever": lever, "was_disabled": was})

    app.router.add_get("/v1/thrifty/shadow", admin_only(state))
    app.router.add_post("/v1/thrifty/shadow/enable", admin_only(enable))
