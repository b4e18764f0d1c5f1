"""Cascade routing: ask the cheap model first and pay for the strong one only when needed.

A scorer reads (prompt, answer) and predicts P(good answer); it is trained like the router
(one logistic regression per tier model on MiniLM + structural features of the pair), from
labeled data with recorded responses. A provider's token logprobs, when it returns them, are a
second signal: a mean logprob under `min_mean_logprob` rejects the answer. Every rejected
attempt is an escalation; its model, score and cost go to `ctx.route_decision.escalations`.

Tier attempts other than the last are side calls (`gateway.call_model`), which the ledger
counts as side cost; an accepted attempt becomes the request's reply, so its cost is moved
out of the side cost. The last tier is called through the rest of the pipeline as usual.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from thrifty.errors import UpstreamError
from thrifty.protocol.view import answer_text, request_text
from thrifty.routing.features import Embed, FeatureSpec, featurize, pair_text
from thrifty.routing.labeled import Example, data_hash
from thrifty.routing.learned import RouterArtifact, _folds, fit_candidate
from thrifty.routing.settings import CascadeSettings
from thrifty.types import Context, Handler, Reply, RouteDecision

if TYPE_CHECKING:
    from thrifty.gateway import Gateway




def mean_logprob(reply: Reply) -> float | None:
    """Mean token logprob of an OpenAI reply that carries `logprobs.content`, else None."""
    body = reply.body or {}
    try:
        content = body["choices"][0]["logprobs"]["content"]
        values = [float(t["logprob"]) for t in content if isinstance(t, dict) and "logprob" in t]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


class Cascade:
    """Runs one request through the tiers of a route's cascade."""

    def __init__(self, gateway: Gateway, settings: CascadeSettings, scorer: RouterArtifact | None) -> None:
        self.gateway = gateway
        self.settings = settings
        self.scorer = scorer
        self.tiers = list(settings.tiers)

    def score(self, model: str, prompt: str, answer: str) -> float | None:
        if self.scorer is None or model not in self.scorer.candidates:
            return None
        x = featurize([pair_text(prompt, answer)], self.scorer.spec)
        return float(self.scorer.predict_features(x)[0, self.scorer.candidates.index(model)])

    async def run(self, ctx: Context, next: Handler, unavailable: Callable[[str], str | None]) -> Reply:
        decision = ctx.route_decision
        if decision is None:  # called outside the route lever (tests, simulations)
            decision = ctx.route_decision = RouteDecision(ctx.requested_model, self.tiers[0], "cascade")
        escalations = decision.escalations
        prompt = request_text(ctx.body)
        body = {k: v for k, v in ctx.body.items() if k not in ("stream", "stream_options")}
        for tier in self.tiers[:-1]:
            why = unavailable(tier)
            if why is not None:
                escalations.append({"model": tier, "reason": why, "cost": "0"})
                continue
            try:
                reply = await self.gateway.call_model(ctx, tier, body)
            except UpstreamError as exc:
                escalations.append({"model": tier, "reason": f"error {exc.status}", "cost": "0"})
                continue
            cost = reply.cost
            if not reply.ok:
                escalations.append({"model": tier, "reason": f"error {reply.status}", "cost": str(cost)})
                continue
            answer = answer_text(reply.body)
            score = await asyncio.to_thread(self.score, tier, prompt, answer)
            lp = mean_logprob(reply)
            reasons = []
            if score is not None and score < self.settings.accept:
                reasons.append(f"score {score:.3f} < {self.settings.accept}")
            if (
                lp is not None
                and self.settings.min_mean_logprob is not None
                and lp < self.settings.min_mean_logprob
            ):
                reasons.append(f"mean logprob {lp:.3f} < {self.settings.min_mean_logprob}")
            if not reasons:
                ctx.side_cost -= cost  # the accepted side call's cost is the request's own
                ctx.target_model = tier
                decision.cascade = {
                    "accepted": tier,
                    "score": score,
                    "mean_logprob": lp,
                }
                return reply
            escalations.append(
                {
                    "model": tier,
                    "score": score,
                    "mean_logprob": lp,
                    "reason": "; ".join(reasons),
                    "cost": str(cost),
                }
            )
        ctx.target_model = self.tiers[-1]
        decision.cascade = {"accepted": self.tiers[-1]}
        return await next(ctx)


# -- training and offline simulation --------------------------------------------------------


def train_scorer(
    examples: Sequence[Example],
    models: Sequence[str],
    *,
    spec: FeatureSpec | None = None,
    embed: Embed | None = None,
    folds: int = 5,
    seed: int = 0,
) -> tuple[RouterArtifact, dict[str, np.ndarray]]:
    """Fit one (prompt, answer) -> P(good) model per tier; returns the artifact and out-of-fold scores."""
    import sklearn

    spec = spec or FeatureSpec()
    usable = [
        ex
        for ex in examples
        if all(m in ex.candidates and ex.candidates[m].response is not None for m in models)
    ]
    if len(usable) < 2 * folds:
        raise ValueError(f"too few examples with recorded responses of {', '.join(models)} ({len(usable)})")
    split = _folds(len(usable), folds, seed, 1)
    fitted: dict[str, Any] = {}
    oof: dict[str, np.ndarray] = {}
    chosen_c: dict[str, float] = {}
    for m in models:
        texts = [pair_text(ex.text, ex.candidates[m].response or "") for ex in usable]
        x = featurize(texts, spec, embed)
        q = np.array([ex.candidates[m].quality for ex in usable])
        fitted[m], oof[m], chosen_c[m] = fit_candidate(x, q, split)
    costs = {m: float(np.mean([float(ex.candidates[m].cost) for ex in usable])) for m in models}
    art = RouterArtifact(
        candidates=list(models),
        feature_spec=spec.to_dict(),
        data_hash=data_hash(usable),
        sklearn_version=sklearn.__version__,
        models=fitted,
        costs=costs,
        n_examples=len(usable),
        kind="scorer",
        chosen_c=chosen_c,
    )
    return art, oof


def simulate(
    scores: np.ndarray, quality: np.ndarray, cost: np.ndarray, accept: float
) -> tuple[float, float, np.ndarray]:
    """Offline cascade over tiers (columns, cheapest first): (mean quality, total cost, tier used).

    `scores[:, j]` is the scorer's P(good) for tier j's recorded answer; the last tier always accepts.
    """
    n, k = quality.shape
    used = np.full(n, k - 1)
    total = 0.0
    for i in range(n):
        for j in range(k):
            total += cost[i, j]
            if j == k - 1 or scores[i, j] >= accept:
                used[i] = j
                break
    return float(quality[np.arange(n), used].mean()), total, used
