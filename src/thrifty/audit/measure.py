"""`thrifty audit LOG --measure N --config candidate.yaml`: turn an assumed saving into a measured one.

The audit can count exact repeats, but what a router or a cap would save -- and what it would
cost in quality -- is an assumption until it is tried. This module tries it on a sample: it
draws N logged requests at random (those with a complete logged answer), sends each through
the candidate config's whole pipeline (its levers, its router, its real providers -- or
`replay` models that answer from recorded data), and asks a judge model, configured in the
candidate, to grade each new answer against the answer that was logged (`thrifty.evals`
judge grader). It reports, with 95% bootstrap intervals over the sampled requests:

- cost: logged vs candidate per request, the paired difference and the relative cut;
- quality: the share of candidate answers the judge rates as good as the logged one (the
  logged answer is the reference, so the delta is that share minus 100%), and the mean score.

Answers the judge could not grade are counted apart, never as passes.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from thrifty.audit.pricing import RateBook
from thrifty.audit.replay import Past, read_past
from thrifty.audit.sources import Format
from thrifty.config import Config
from thrifty.evals.stats import Interval, mean_ci, paired_delta

__all__ = ["MeasureResult", "RUBRIC", "measure", "run_measure"]

#: What the judge is asked: is the new answer as good as the logged one?
RUBRIC = (
    "The reference answer is the one the user received before. Score how well the assistant's answer "
    "does the same job: 10 if it is as correct, complete and useful as the reference (wording may "
    "differ), lower as it is less correct or less complete, 1 if it is wrong or unusable."
)


@dataclass
class MeasureResult:
    sampled: int = 0
    eligible: int = 0
    answered: int = 0
    failed: int = 0
    graded: int = 0
    ungraded: int = 0
    judge: str = ""
    logged_cost: dict[str, float] = field(default_factory=dict)
    candidate_cost: dict[str, float] = field(default_factory=dict)
    cost_delta: dict[str, float] = field(default_factory=dict)
    cost_cut: dict[str, float] = field(default_factory=dict)
    as_good: dict[str, float] = field(default_factory=dict)
    quality_delta: dict[str, float] = field(default_factory=dict)
    mean_score: dict[str, float] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _answer_text(response: dict[str, Any] | None) -> str | None:
    if not response:
        return None
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        msg = choices[0].get("message") or {}
        text = msg.get("content")
        return text if isinstance(text, str) and text.strip() else None
    content = response.get("content")  # Anthropic
    if isinstance(content, list):
        text = "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        return text or None
    return None


def _logged_cost(past: Past, rates: RateBook) -> float | None:
    if past.cost is not None:
        return past.cost
    usage = (past.response or {}).get("usage") or {}
    r = rates(str(past.request.get("model") or (past.response or {}).get("model") or ""))
    if r is None or not isinstance(usage, dict):
        return None
    return r.cost(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _ratio_ci(num: np.ndarray, den: np.ndarray, resamples: int = 2000, seed: int = 0) -> Interval:
    """1 - sum(num)/sum(den) with a percentile bootstrap over the paired items."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(resamples, len(num)))
    cuts = 1 - num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1e-300)
    low, high = np.percentile(cuts, [2.5, 97.5])
    return Interval(float(1 - num.sum() / max(den.sum(), 1e-300)), float(low), float(high), len(num))


def _sample(location: str, fmt: Format, n: int, seed: int, rates: RateBook) -> tuple[list[tuple[Past, str, float]], int]:
    """A uniform sample (reservoir) of `n` logged requests with a logged answer and cost."""
    rng = random.Random(seed)
    kept: list[tuple[Past, str, float]] = []
    seen = 0
    items, _ = read_past(location, fmt)
    for past in items:
        text = _answer_text(past.response)
        cost = _logged_cost(past, rates)
        if past.error or text is None or cost is None:
            continue
        seen += 1
        if len(kept) < n:
            kept.append((past, text, cost))
        else:
            j = rng.randrange(seen)
            if j < n:
                kept[j] = (past, text, cost)
    return kept, seen


async def measure(
    location: str,
    config: Config,
    n: int,
    judge: str,
    *,
    fmt: Format = "auto",
    model_map: dict[str, str] | None = None,
    seed: int = 0,
    concurrency: int = 8,
    rates: RateBook | None = None,
) -> MeasureResult:
    """Replay `n` sampled requests of the log through `config` and grade them with `judge`."""
    from thrifty.evals.graders import Services
    from thrifty.evals.runner import GatewayTarget, run_set
    from thrifty.evals.sets import EvalItem

    if not config.has_model(judge):
        raise ValueError(f"--judge {judge!r} is not a model of the candidate config")
    model_map = model_map or {}
    for mapped in model_map.values():
        if not config.has_model(mapped):
            raise ValueError(f"--model-map names {mapped!r}, which the candidate config does not configure")
    rates = rates or RateBook()
    sample, eligible = _sample(location, fmt, n, seed, rates)
    res = MeasureResult(sampled=len(sample), eligible=eligible, judge=judge)
    items: list[EvalItem] = []
    logged: dict[str, float] = {}
    for past, text, cost in sample:
        body = {k: v for k, v in past.request.items() if k not in ("stream", "stream_options")}
        model = str(body.get("model") or "")
        body["model"] = model_map.get(model, model_map.get("*", model))
        if not config.has_model(body["model"]):
            res.failed += 1
            if len(res.failures) < 20:
                res.failures.append((past.line, f"model {model!r} is not in the candidate config (use --model-map)"))
            continue
        spec = {"type": "judge", "model": judge, "rubric": RUBRIC, "scale": 10, "pass_score": 8}
        route = past.tags.get("route", "default")
        items.append(EvalItem(id=str(past.line), request=body, grader=spec, expected=text, line=past.line,
                              meta={"route": route}))  # fmt: skip
        logged[str(past.line)] = cost
    async with GatewayTarget(config, "candidate") as gw:
        run = await run_set(items, gw, concurrency=concurrency, services=Services(judge=gw.judge), progress=False)
    paired_logged: list[float] = []
    paired_cand: list[float] = []
    passes: list[float] = []
    scores: list[float] = []
    for item in items:
        r = run.results[item.id]
        if r.answer.error:
            res.failed += 1
            if len(res.failures) < 20:
                res.failures.append((item.line, r.answer.error))
            continue
        res.answered += 1
        res.served[r.answer.served_model] = res.served.get(r.answer.served_model, 0) + 1
        paired_logged.append(logged[item.id])
        paired_cand.append(r.answer.cost)
        if r.grade.status == "ungraded":
            res.ungraded += 1
            continue
        res.graded += 1
        passes.append(1.0 if r.grade.passed else 0.0)
        scores.append(float(r.grade.value) if isinstance(r.grade.value, int | float) else 10 * (r.grade.score or 0.0))
    if paired_logged:
        a, b = np.asarray(paired_logged), np.asarray(paired_cand)
        res.logged_cost = mean_ci(paired_logged).to_dict()
        res.candidate_cost = mean_ci(paired_cand).to_dict()
        res.cost_delta = paired_delta(paired_logged, paired_cand).delta.to_dict()
        res.cost_cut = _ratio_ci(b, a).to_dict()
    if passes:
        share = mean_ci(passes)
        res.as_good = share.to_dict()
        res.quality_delta = Interval(share.mean - 1, share.low - 1, share.high - 1, share.n).to_dict()
        res.mean_score = mean_ci(scores).to_dict()
    return res


def run_measure(location: str, config: Config, n: int, judge: str, **kwargs: Any) -> MeasureResult:
    return asyncio.run(measure(location, config, n, judge, **kwargs))
