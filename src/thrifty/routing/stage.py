"""The `route` lever: send each request to the cheapest model predicted to answer it well.

Order of decisions on a request: a `tier:NAME` alias the client asked for, then the route's
rules, then (for `auto`, or every request with `apply_to: all`) the learned router or the
cascade, else the route's default. A pick whose provider is down (not ready, circuit open) or
fails before answering is replaced by the route's default model, and the reason is noted.
Once the reply's cost is known, the stage records its saving: the same usage priced on the
model the client asked for (or the route's default, for an alias) minus what it cost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from thrifty.config import lever_model
from thrifty.errors import BadRequest, ConfigError, UpstreamError
from thrifty.pipeline.lever import Lever
from thrifty.routing.learned import ArtifactError, RouterArtifact, load_artifact, route
from thrifty.routing.policy import Policy
from thrifty.routing.pricing import PriceFn, gateway_price_fn
from thrifty.routing.rules import AUTO, TIER_PREFIX, RequestView, Rules, UnknownAlias, is_alias, resolve_tier
from thrifty.routing.settings import RouteSettings
from thrifty.types import Context, EventStream, Handler, Reply, RouteDecision, Usage

if TYPE_CHECKING:
    from thrifty.gateway import Gateway
    from thrifty.routing.cascade import Cascade

log = logging.getLogger(__name__)

NAME = "route"


@dataclass
class Decision:
    model: str
    via: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoutePlan:
    """A route's validated settings with its rules compiled and its artifacts loaded."""

    settings: RouteSettings
    rules: Rules
    router: RouterArtifact | None = None
    candidates: list[str] = field(default_factory=list)
    policy: Policy = "threshold"
    knob: float = 0.5
    cascade: Cascade | None = None


def _check_models(names: list[str], config: Any, where: str) -> None:
    missing = [n for n in names if not n.startswith(TIER_PREFIX) and not config.has_model(n)]
    if missing:
        raise ConfigError(f"{where}: not configured models: {', '.join(sorted(set(missing)))}")


def make_plan(gateway: Gateway, route_name: str, artifacts: dict[str, RouterArtifact]) -> RoutePlan:
    config = gateway.config
    s = lever_model(config, NAME, RouteSettings, route_name)
    where = f"{config.source or 'config'}: route" + (
        "" if route_name == "default" else f" (routes.{route_name})"
    )
    named = [r.model for r in s.rules] + list(s.tiers.values()) + ([s.default] if s.default else [])
    _check_models(named, config, where)
    for r in s.rules:
        if r.model.startswith(TIER_PREFIX) and r.model[len(TIER_PREFIX) :] not in s.tiers:
            raise ConfigError(f"{where}: rule model {r.model!r} names an undefined tier")
    plan = RoutePlan(settings=s, rules=Rules(s.rules))
    if s.router:
        try:
            art = artifacts.get(s.router) or load_artifact(s.router)
        except ArtifactError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        artifacts[s.router] = art
        cands = list(s.candidates or art.candidates)
        unknown = [c for c in cands if c not in art.candidates]
        if unknown:
            raise ConfigError(f"{where}: candidates not in the router artifact: {', '.join(unknown)}")
        missing = [c for c in cands if not config.has_model(c)]
        if missing:
            raise ConfigError(
                f"{where}: the router {s.router} was trained for models this config lacks: {', '.join(missing)}"
            )
        plan.router, plan.candidates = art, cands
        cal = art.calibration
        plan.policy = s.policy or (cal.policy if cal else "threshold")
        if s.knob is not None:
            plan.knob = s.knob
        elif s.target is not None:
            k = art.knob_for(plan.policy, s.target)
            if k is None:
                raise ConfigError(
                    f"{where}: the router's calibration cannot reach target {s.target}; lower it or set knob"
                )
            plan.knob = k
        elif cal is not None and cal.policy == plan.policy:
            plan.knob = cal.knob
    if s.cascade:
        from thrifty.routing.cascade import Cascade

        _check_models(s.cascade.tiers, config, where + ".cascade")
        if s.cascade.judge is not None:
            _check_models([s.cascade.judge.model], config, where + ".cascade.judge")
        signals = None
        if s.cascade.signals:  # a cascade over stages, scored on its answers' signals
            from thrifty.routing.cascade_eval import load_cascade

            try:
                signals = load_cascade(s.cascade.signals)
            except ArtifactError as exc:
                raise ConfigError(f"{where}.cascade: {exc}") from None
            if len(signals.config.stages[-1]) != 1:
                raise ConfigError(f"{where}.cascade: the last stage of {s.cascade.signals} must be one model")
            _check_models(signals.config.models, config, where + ".cascade.signals")
        scorer = None
        if s.cascade.scorer:
            try:
                scorer = artifacts.get(s.cascade.scorer) or load_artifact(s.cascade.scorer)
            except ArtifactError as exc:
                raise ConfigError(f"{where}.cascade: {exc}") from None
            artifacts[s.cascade.scorer] = scorer
            lacking = [t for t in s.cascade.tiers[:-1] if t not in scorer.candidates]
            if lacking:
                raise ConfigError(
                    f"{where}.cascade: the scorer {s.cascade.scorer} has no model for tiers: {', '.join(lacking)}"
                )
        plan.cascade = Cascade(gateway, s.cascade, scorer, signals)
    return plan


class RouteStage(Lever[RouteSettings]):
    name = NAME
    Settings = RouteSettings

    def __init__(self, gateway: Gateway, price_fn: PriceFn | None = None) -> None:
        super().__init__(gateway)
        self.price_fn = price_fn or gateway_price_fn(gateway.config)
        artifacts: dict[str, RouterArtifact] = {}
        self.plans: dict[str, RoutePlan] = {"default": make_plan(gateway, "default", artifacts)}
        for r in gateway.config.lever_routes(NAME):
            self.plans[r] = make_plan(gateway, r, artifacts)

    def start(self) -> None:
        # The server accepts a model name that is not configured when this says it is an alias.
        self.gateway.aliases = self.is_alias
        # Load the embedding model now rather than on the first routed request.
        if any(p.router is not None and p.router.spec.embedding for p in self.plans.values()):
            from thrifty.embed import shared_embedder

            shared_embedder().embed(["warm up"])

    def enabled(self, traffic: str) -> bool:
        return self.plan_for(traffic).settings.enabled

    async def when_off(self, ctx: Context, next: Handler) -> Reply:
        """Routing is off for this request: an alias cannot be resolved, a model name passes."""
        requested = ctx.requested_model or str(ctx.body.get("model", ""))
        if is_alias(requested):
            raise BadRequest(f"model {requested!r}: routing is off on this route", param="model", code="model_not_found")
        return await next(ctx)

    def is_alias(self, name: str) -> bool:
        """`auto` or `tier:NAME`, where some route can resolve it."""
        if name == AUTO:
            return any(p.router or p.cascade or p.settings.default for p in self.plans.values())
        if name.startswith(TIER_PREFIX):
            return any(name[len(TIER_PREFIX) :] in p.settings.tiers for p in self.plans.values())
        return False

    def plan_for(self, route_name: str) -> RoutePlan:
        return self.plans.get(route_name) or self.plans["default"]

    # -- availability ----------------------------------------------------------------------

    def unavailable(self, model: str) -> str | None:
        """Why `model` cannot take a request now, or None when it can."""
        if not self.gateway.config.has_model(model):
            return "not a configured model"
        provider = self.gateway.providers.get(model)
        if provider is None:
            return None if not self.gateway.providers else "no provider"
        if not provider.ready():
            return "provider not ready"
        dispatcher = self.gateway.dispatcher
        breaker = dispatcher.breakers.get(model) if dispatcher is not None else None
        if breaker is not None and breaker.state == "open":
            return f"circuit open (retry in {breaker.retry_in():.0f}s)"
        return None

    # -- deciding --------------------------------------------------------------------------

    async def decide(self, ctx: Context, plan: RoutePlan) -> Decision | None:
        s = plan.settings
        requested = ctx.requested_model or str(ctx.body.get("model", ""))
        view = RequestView.of(ctx.body, ctx.traffic, ctx.tags, requested)
        if requested.startswith(TIER_PREFIX):
            return Decision(resolve_tier(requested, s), "alias")
        rule = plan.rules.match(view)
        if rule is not None:
            return Decision(resolve_tier(rule.rule.model, s), f"rule:{rule.label}")
        if requested != AUTO and s.apply_to == "aliases":
            return None
        if plan.router is not None:
            art = plan.router
            p = await asyncio.to_thread(art.predict, [view.prompt or view.full_text])
            chosen = route(art, p, plan.policy, plan.knob, plan.candidates)[0]
            probs = {c: round(float(p[0, art.candidates.index(c)]), 4) for c in plan.candidates}
            return Decision(chosen, "router", {"p": probs, "policy": plan.policy, "knob": plan.knob})
        if plan.cascade is not None:
            if ctx.stream and plan.cascade.settings.stream == "skip":
                # a streamed answer cannot be scored before it reaches the client
                return Decision(
                    s.default or plan.cascade.tiers[-1], "cascade", {"stream": "skipped the cascade"}
                )
            return Decision(plan.cascade.tiers[0], "cascade")
        if requested == AUTO and s.default:
            return Decision(s.default, "default")
        return None

    # -- the stage -------------------------------------------------------------------------

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        plan = self.plan_for(ctx.traffic)
        s = plan.settings
        requested = ctx.requested_model or str(ctx.body.get("model", ""))
        try:
            decision = await self.decide(ctx, plan)
        except UnknownAlias as exc:
            raise BadRequest(str(exc), param="model", code="model_not_found") from None
        if decision is None:
            if is_alias(requested):
                raise BadRequest(f"model {requested!r}: this route has no router, cascade or default",
                                 param="model", code="model_not_found")
            return await next(ctx)
        counterfactual = requested if self.gateway.config.has_model(requested) else s.default
        info = RouteDecision(requested=requested, model=decision.model, via=decision.via, detail=dict(decision.detail))
        ctx.route_decision = info
        why = self.unavailable(decision.model)
        if why is not None and s.default and decision.model != s.default:
            self._fall_back(ctx, info, decision.model, why, s.default)
            decision = Decision(s.default, decision.via)
        if (
            decision.via == "cascade"
            and plan.cascade is not None
            and (not ctx.stream or plan.cascade.settings.stream == "buffer")
            and info.fallback is None
        ):
            reply = await plan.cascade.run(ctx, next, self.unavailable)
            info.model = ctx.target_model
        else:
            ctx.target_model = decision.model
            reply = await self._call(ctx, next, info, s)
        if counterfactual:
            self._record_saving(ctx, reply, counterfactual)
        return reply

    async def _call(self, ctx: Context, next: Handler, info: RouteDecision, s: RouteSettings) -> Reply:
        """Call the pick; if it fails before answering, try the route's default once."""
        picked = ctx.target_model
        can_retry = bool(s.default) and picked != s.default and self.gateway.config.has_model(s.default or "")
        try:
            reply = await next(ctx)
        except UpstreamError as exc:
            if not can_retry or exc.status in _REQUEST_ERRORS:  # the request itself is wrong
                raise
            assert s.default is not None
            self._fall_back(ctx, info, picked, f"error {exc.status}: {exc.message}", s.default)
            return await next(ctx)
        if (
            can_retry
            and not reply.ok
            and (reply.status >= 500 or reply.status == 429)
            and reply.stream is None
        ):
            assert s.default is not None
            self._fall_back(ctx, info, picked, f"error {reply.status}", s.default)
            return await next(ctx)
        return reply

    def _fall_back(self, ctx: Context, info: RouteDecision, picked: str, why: str, default: str) -> None:
        ctx.note(f"route: {picked} unavailable ({why}); using the route's default {default}")
        info.fallback = {"from": picked, "reason": why}
        info.model = default
        ctx.target_model = default

    # -- savings ---------------------------------------------------------------------------

    def _counterfactual_cost(self, ctx: Context, model: str, usage: Usage) -> Decimal | None:
        """What the request would have cost on `model`: a replay provider knows it exactly (its
        recorded cost for this prompt); otherwise the same usage at `model`'s price."""
        recorded = _recorded_cost(self.gateway.providers.get(model), ctx.body)
        if recorded is not None:
            return recorded
        return self.price_fn(model, usage)

    def _record_saving(self, ctx: Context, reply: Reply, counterfactual: str) -> None:
        if reply.stream is not None:
            stream = reply.stream

            def on_finish(st: EventStream) -> None:
                self._save(ctx, reply, counterfactual, st.usage)

            stream.on_finish(on_finish)
        elif reply.ok:
            self._save(ctx, reply, counterfactual, reply.usage)

    def _save(self, ctx: Context, reply: Reply, counterfactual: str, usage: Usage) -> None:
        served = reply.served_model or ctx.target_model
        decision = ctx.route_decision
        if served == counterfactual and (decision is None or not decision.escalations):
            return
        would = self._counterfactual_cost(ctx, counterfactual, usage)
        actual = reply.cost if reply.cost else self.price_fn(served, usage)
        if would is None or actual is None:
            ctx.note(
                f"route: no price for {counterfactual if would is None else served}; saving not recorded"
            )
            return
        escalated = decision.escalation_cost() if decision is not None else Decimal(0)
        # Answers a cascade stage asked for beside the one it served (extra samples, other models).
        cascade = decision.cascade if decision is not None else None
        unserved = Decimal(str((cascade or {}).get("unserved_cost", 0)))
        saving = would - actual - escalated - unserved
        if decision is not None:
            decision.counterfactual_model = counterfactual
        ctx.save(NAME, saving)


#: Upstream statuses that blame the request, not the model: another model would refuse it too.
_REQUEST_ERRORS = (400, 401, 403, 413, 422)


def _recorded_cost(provider: object, body: dict[str, Any]) -> Decimal | None:
    fn = getattr(provider, "recorded_cost", None)
    return fn(body) if callable(fn) else None
