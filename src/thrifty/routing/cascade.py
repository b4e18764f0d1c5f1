"""Cascade routing: ask the cheap model first and pay for the strong one only when needed.

Two ways to judge a cheap answer. With a `signals` artifact (`thrifty router train --cascade`),
each stage calls its models at once (and `samples` answers of each), and a scorer reads signals
from the answers themselves (`thrifty.routing.signals`: agreement, verifiers, logprobs); the
best answer is served when it clears the threshold, else the next stage is called; every
answer is paid for, and those not served stay in the side cost.

Without one, a scorer reads (prompt, answer) and predicts P(good answer); it is trained like
the router (one logistic regression per tier model on MiniLM + structural features of the
pair), from labeled data with recorded responses. A provider's token logprobs, when it returns them, are a
second signal: a mean logprob under `min_mean_logprob` rejects the answer. In both ways the
route's own verifiers (`verify`: a final number, a regex, a JSON schema, tests run against the
answer's code in the sandbox) reject an answer that fails them. A `judge` tier grades an
answer that passed them but scored below `accept` (from its `min_score` up; every answer when
there is no scorer): a judge's pass serves it, anything else (a low score, a failed,
timed-out or unreadable judge) escalates; the judge's call is side cost. Every rejected
attempt is an escalation; its model, score and cost go to `ctx.route_decision.escalations`.

A streaming request skips the cascade unless `stream: buffer`: then tiers are asked whole as
always, and a served cheap answer is replayed as the client's stream (`as_client_asked`).

Tier attempts other than the last are side calls (`gateway.call_model`), which the ledger
counts as side cost; an accepted attempt becomes the request's reply, so its cost is moved
out of the side cost. The last tier is called through the rest of the pipeline as usual.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from thrifty.errors import UpstreamError
from thrifty.evals.graders import judge_messages, parse_judge_score
from thrifty.protocol.replay import replay_events
from thrifty.protocol.view import answer_text, answer_with_calls, request_text
from thrifty.routing.execution import run_tests
from thrifty.routing.features import Embed, FeatureSpec, featurize, pair_text
from thrifty.routing.labeled import Example, data_hash
from thrifty.routing.learned import RouterArtifact, _folds, fit_candidate
from thrifty.routing.settings import CascadeSettings, JudgeTierSettings
from thrifty.routing.signals import Answer, check_format, pool_signals
from thrifty.types import Context, EventStream, Handler, Reply, RouteDecision

if TYPE_CHECKING:
    from thrifty.gateway import Gateway
    from thrifty.routing.cascade_eval import CascadeArtifact




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


def as_client_asked(ctx: Context, reply: Reply) -> Reply:
    """A served side answer (always asked for whole) as the client asked for it: for a
    streaming client, its body replayed as that protocol's stream, with its usage and cost."""
    if not ctx.stream or reply.body is None or reply.stream is not None:
        return reply
    stream = EventStream.replay(replay_events(reply.body, ctx.protocol, ctx.endpoint, ctx.body.get("stream_options")))
    stream.usage = reply.usage
    reply.stream, reply.body = stream, None
    return reply


def judge_needed(score: float | None, accept: float, judge: JudgeTierSettings | None) -> bool:
    """Whether an answer that passed the route's verifiers goes to the judge: with one
    configured, when there is no score to go by, or the score falls in [min_score, accept)."""
    if judge is None:
        return False
    return score is None or judge.min_score <= score < accept


class Cascade:
    """Runs one request through the tiers (or, with a signals artifact, the stages) of a route's cascade."""

    def __init__(
        self,
        gateway: Gateway,
        settings: CascadeSettings,
        scorer: RouterArtifact | None,
        signals: CascadeArtifact | None = None,
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.scorer = scorer
        self.signals = signals
        if signals is not None:
            if len(signals.config.stages[-1]) != 1:
                raise ValueError("a served cascade's last stage must be one model (called through the pipeline)")
            self.tiers = signals.config.models
            cal = signals.calibration
            default = cal.knob if cal is not None else 0.5
        else:
            self.tiers = list(settings.tiers)
            default = 0.5
        self.accept = settings.accept if settings.accept is not None else default

    def score(self, model: str, prompt: str, answer: str) -> float | None:
        if self.scorer is None or model not in self.scorer.candidates:
            return None
        x = featurize([pair_text(prompt, answer)], self.scorer.spec)
        return float(self.scorer.predict_features(x)[0, self.scorer.candidates.index(model)])

    async def rejected(self, reply: Reply, answer: str) -> list[str]:
        """Why an answer may not be served: the logprob floor and the route's verifiers."""
        reasons = []
        lp = mean_logprob(reply)
        if lp is not None and self.settings.min_mean_logprob is not None and lp < self.settings.min_mean_logprob:
            reasons.append(f"mean logprob {lp:.3f} < {self.settings.min_mean_logprob}")
        v = self.settings.verify
        if v is not None:
            why = check_format(answer, regex=v.regex, json_schema=v.json_schema, numeric=v.numeric)
            if why is not None:
                reasons.append(why)
            if v.tests is not None:
                passed = await run_tests(answer, v.tests)
                if passed is not True:
                    reasons.append("no code to test" if passed is None else "fails the route's tests")
        return reasons

    async def judged(
        self, ctx: Context, prompt: str, answer: str, unavailable: Callable[[str], str | None]
    ) -> tuple[bool, dict[str, Any]]:
        """Ask the judge tier about one answer: (served, what the judge said). Only a readable
        score at or above `pass_score` serves it; the call's cost is side cost."""
        judge = self.settings.judge
        assert judge is not None
        info: dict[str, Any] = {"model": judge.model}
        why = unavailable(judge.model)
        if why is not None:
            return False, {**info, "error": why}
        messages = judge_messages({"rubric": judge.rubric, "scale": judge.scale}, prompt, answer, None)
        body = {"model": judge.model, "messages": messages, "temperature": 0, "max_tokens": judge.max_tokens}
        try:
            reply = await asyncio.wait_for(self.gateway.call_model(ctx, judge.model, body, "openai"), judge.timeout)
        except TimeoutError:
            return False, {**info, "error": f"timed out after {judge.timeout:g}s"}
        except UpstreamError as exc:
            return False, {**info, "error": f"error {exc.status}"}
        info["cost"] = str(reply.cost)
        if ctx.route_decision is not None:
            ctx.route_decision.judge_cost += reply.cost
        if not reply.ok:
            return False, {**info, "error": f"error {reply.status}"}
        score = parse_judge_score(answer_text(reply.body), judge.scale)
        if score is None:
            return False, {**info, "error": "no readable score"}
        info["score"] = score
        return score >= judge.pass_score, info

    def _judge_reason(self, info: dict[str, Any]) -> str:
        judge = self.settings.judge
        assert judge is not None
        if "error" in info:
            return f"judge {judge.model}: {info['error']}"
        return f"judge {judge.model}: {info['score']:g}/{judge.scale} < {judge.pass_score:g}"

    async def run(self, ctx: Context, next: Handler, unavailable: Callable[[str], str | None]) -> Reply:
        decision = ctx.route_decision
        if decision is None:  # called outside the route lever (tests, simulations)
            decision = ctx.route_decision = RouteDecision(ctx.requested_model, self.tiers[0], "cascade")
        if self.signals is not None:
            return await self._run_stages(ctx, next, unavailable, self.signals, decision)
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
            answer = answer_with_calls(reply.body)  # a tool call is judged too, not read as ""
            score = await asyncio.to_thread(self.score, tier, prompt, answer)
            lp = mean_logprob(reply)
            reasons = await self.rejected(reply, answer)
            judge: dict[str, Any] | None = None
            if not reasons and judge_needed(score, self.accept, self.settings.judge):
                passed, judge = await self.judged(ctx, prompt, answer, unavailable)
                if not passed:
                    reasons.append(self._judge_reason(judge))
                    if score is not None:
                        reasons.insert(0, f"score {score:.3f} < {self.accept}")
            elif score is not None and score < self.accept:
                reasons.insert(0, f"score {score:.3f} < {self.accept}")
            if not reasons:
                ctx.side_cost -= cost  # the accepted side call's cost is the request's own
                ctx.target_model = tier
                decision.cascade = {
                    "accepted": tier,
                    "score": score,
                    "mean_logprob": lp,
                    **({"judge": judge} if judge is not None else {}),
                }
                return as_client_asked(ctx, reply)
            escalations.append(
                {
                    "model": tier,
                    "score": score,
                    "mean_logprob": lp,
                    "reason": "; ".join(reasons),
                    "cost": str(cost),
                    **({"judge": judge} if judge is not None else {}),
                }
            )
        ctx.target_model = self.tiers[-1]
        decision.cascade = {"accepted": self.tiers[-1]}
        return await next(ctx)

    async def _ask(
        self, ctx: Context, model: str, body: dict[str, Any], sample: int, unavailable: Callable[[str], str | None]
    ) -> tuple[Reply | None, str | None]:
        """One answer of a stage: (reply, None) or (None, why there is none)."""
        why = unavailable(model)
        if why is not None:
            return None, why
        if sample > 0:  # an extra sample: the same request, sampled
            body = {**body, "temperature": self.settings.sample_temperature}
        try:
            reply = await self.gateway.call_model(ctx, model, body)
        except UpstreamError as exc:
            return None, f"error {exc.status}"
        if not reply.ok:
            return None, f"error {reply.status}"
        return reply, None

    async def _run_stages(
        self, ctx: Context, next: Handler, unavailable: Callable[[str], str | None], art: CascadeArtifact,
        decision: RouteDecision,
    ) -> Reply:
        escalations = decision.escalations
        prompt = request_text(ctx.body)
        body = {k: v for k, v in ctx.body.items() if k not in ("stream", "stream_options")}
        prior = await asyncio.to_thread(art.prior, [prompt])
        answers: list[Answer] = []
        replies: list[Reply | None] = []
        gates: list[list[str]] = []
        for s, scorer in enumerate(art.scorers):
            stage = art.config.stages[s]
            asks = [(m, k) for m in stage for k in range(self.settings.samples)]
            got = await asyncio.gather(*(self._ask(ctx, m, body, k, unavailable) for m, k in asks))
            fresh: list[tuple[Reply, str] | None] = []
            for (m, _), (reply, why) in zip(asks, got, strict=True):
                text = answer_with_calls(reply.body) if reply is not None else None
                answers.append(Answer(m, text, mean_logprob(reply) if reply is not None else None))
                replies.append(reply)
                fresh.append(None if reply is None or text is None else (reply, text))
                gates.append([why or "no answer"])
            checked = await asyncio.gather(*(self.rejected(*f) for f in fresh if f is not None))
            at = len(gates) - len(fresh)
            for j, f in enumerate(fresh):
                if f is not None:
                    gates[at + j] = checked.pop(0)
            sig = await pool_signals(answers, art.config.kind, prompt)
            last = art.config.models[-1]
            pri = None
            if prior is not None:
                cols = art.config.models
                pri = [(float(prior[0, cols.index(a.model)]), float(prior[0, cols.index(last)])) for a in answers]
            _, _, ps = await asyncio.to_thread(scorer.best, answers, sig, prompt, pri)
            ps = np.where([bool(g) for g in gates], 0.0, ps)
            i = int(np.argmax(ps))
            stage_cost = sum((r.cost for r in replies[len(replies) - len(asks) :] if r is not None), Decimal(0))
            chosen = replies[i]
            served = chosen is not None and not gates[i] and ps[i] >= self.accept
            judge: dict[str, Any] | None = None
            reason = "; ".join(gates[i]) or f"score {ps[i]:.3f} < {self.accept}"
            if chosen is not None and not gates[i] and judge_needed(float(ps[i]), self.accept, self.settings.judge):
                served, judge = await self.judged(ctx, prompt, answers[i].text or "", unavailable)
                if not served:
                    reason = f"score {ps[i]:.3f} < {self.accept}; {self._judge_reason(judge)}"
            if served and chosen is not None:
                ctx.side_cost -= chosen.cost  # the served answer's cost is the request's own
                ctx.target_model = answers[i].model
                decision.cascade = {
                    "accepted": answers[i].model,
                    "stage": s,
                    "score": round(float(ps[i]), 4),
                    "answers": len(answers),
                    "signals": sig.kind,
                    # paid for and not served: the route's saving is net of it
                    "unserved_cost": str(stage_cost - chosen.cost),
                    **({"judge": judge} if judge is not None else {}),
                }
                return as_client_asked(ctx, chosen)
            escalations.append(
                {
                    "stage": s,
                    "models": stage,
                    "answers": len(asks),
                    "best": answers[i].model,
                    "score": round(float(ps[i]), 4),
                    "reason": reason,
                    "cost": str(stage_cost),
                    **({"judge": judge} if judge is not None else {}),
                }
            )
        ctx.target_model = self.tiers[-1]
        decision.cascade = {"accepted": self.tiers[-1], "stage": len(art.scorers)}
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
