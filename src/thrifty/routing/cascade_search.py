"""Choosing a cascade from the training data alone: which cheap models form the first stage,
whether the scorers read the prompt-only prior, which scorer family and which threshold policy.

A cascade hand-tuned per dataset tells nothing about the next dataset. `search_cascade` is the
procedure `thrifty router train --cascade auto` runs on any labeled file with recorded answers
(RouterBench's format: every model answered every prompt), so a held-out file of the same
format gets exactly what the benchmark's files got:

1. the reference is the model with the best training accuracy (the costlier on a tie);
2. the other models are ranked by training accuracy; the candidate stages are the first 1, 2, 3,
   4, 5 and 7 of them that fit, one after the other, in the cost cap, and again in half the cap
   (room to escalate);
3. each candidate stage is trained with and without the prompt-only prior, with 5-fold
   out-of-fold scorers averaged over 3 different fold splits (logistic regression or
   gradient-boosted trees, whichever cross-validates better), and its accept threshold is
   calibrated out of fold: by default (`likeliest`), of the thresholds reaching the target
   within the cap, the one meeting both in the most bootstrap resamples of train;
4. the candidate kept is the one that meets the target and the cap in the largest share of
   bootstrap resamples of the training rows; when none meets them, the best quality within the
   cap. Every answer a stage asks for is paid for in every figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from thrifty.routing.cascade_eval import CascadeArtifact, CascadeConfig, SignalCache, train_cascade
from thrifty.routing.features import Embed, FeatureSpec, featurize
from thrifty.routing.labeled import Example, common_candidates
from thrifty.routing.learned import label_matrices

__all__ = ["POOL_SIZES", "SearchResult", "Tried", "candidate_pools", "search_cascade", "strongest"]

#: how many of the ranked cheap models a candidate first stage asks
POOL_SIZES: tuple[int, ...] = (1, 2, 3, 4, 5, 7)


@dataclass
class Tried:
    """One candidate of the search and its out-of-fold calibration on train."""

    label: str
    art: CascadeArtifact

    @property
    def key(self) -> tuple[bool, float, float]:
        cal = self.art.calibration
        assert cal is not None
        if cal.met:
            return (True, cal.reach_probability or 0.0, -cal.cost_per_call)
        return (False, cal.quality, -cal.cost_per_call)


@dataclass
class SearchResult:
    best: Tried
    tried: list[Tried]
    reference: str


def strongest(examples: Sequence[Example], models: Sequence[str]) -> str:
    """The model with the best mean quality on `examples` (the costlier on a tie)."""
    q, c = label_matrices(examples, models)
    return max(models, key=lambda m: (round(float(q[:, models.index(m)].mean()), 12), float(c[:, models.index(m)].mean())))


def candidate_pools(
    examples: Sequence[Example], reference: str, max_cost: float | None, sizes: Sequence[int] = POOL_SIZES
) -> list[list[str]]:
    """The candidate first stages (see the module docstring), each cheapest model first."""
    models = [m for m in common_candidates(list(examples)) if m != reference]
    if not models:
        raise ValueError("a cascade needs at least one model besides the reference")
    q, c = label_matrices(examples, [*models, reference])
    cost = {m: float(c[:, j].mean()) for j, m in enumerate(models)}
    acc = {m: float(q[:, j].mean()) for j, m in enumerate(models)}
    ref_cost = float(c[:, -1].mean())
    cap = (max_cost if max_cost is not None else 1.0) * ref_cost
    ranked = sorted((m for m in models if cost[m] < ref_cost), key=lambda m: (-acc[m], cost[m], m))
    pools: list[list[str]] = []
    # Two budgets for the stage: the whole cap (many cheap answers, few escalations) and half of
    # it (room to escalate); under each, the best models that still fit, in order.
    for budget in (cap, cap / 2):
        pool: list[str] = []
        for m in ranked:
            if sum(cost[x] for x in pool) + cost[m] > budget:
                continue
            pool.append(m)
            stage = sorted(pool, key=lambda x: (cost[x], x))
            if len(pool) in sizes and stage not in pools:
                pools.append(stage)
    if not pools:  # nothing fits: the single cheapest model, so that a figure exists
        pools.append([min(models, key=lambda m: (cost[m], m))])
    return pools


def _short(m: str) -> str:
    return m.split("/")[-1]


def search_cascade(
    examples: Sequence[Example],
    *,
    target: float,
    max_cost: float | None,
    reference: str | None = None,
    kind: str = "auto",
    priors: Sequence[bool] = (False, True),
    policy: str = "likeliest",
    cache: SignalCache | None = None,
    embed: Embed | None = None,
    log: Callable[[str], None] | None = None,
    seed: int = 0,
    repeats: int = 3,
) -> SearchResult:
    """Train every candidate cascade out of fold on `examples` and keep the likeliest to meet
    `target` x the reference's quality within `max_cost` x its cost."""
    usable = list(examples)
    ref = reference or strongest(usable, common_candidates(usable))
    pools = candidate_pools(usable, ref, max_cost)
    x_prompt = featurize([e.text for e in usable], FeatureSpec(), embed) if any(priors) else None
    tried: list[Tried] = []
    for pool in pools:
        for prior in priors:
            art, _ = train_cascade(
                usable,
                CascadeConfig([pool, [ref]], kind),
                reference=ref,
                target=target,
                max_cost=max_cost,
                cache=cache,
                prior=prior,
                embed=embed,
                x_prompt=x_prompt,
                policy=policy,
                seed=seed,
                repeats=repeats,
            )
            label = " + ".join(_short(m) for m in pool) + (" | prompt prior" if prior else "")
            tried.append(Tried(label, art))
            if log is not None:
                cal = art.calibration
                assert cal is not None
                fams = "/".join(s.family for s in art.scorers)
                log(
                    f"    {label:78s} {fams:9s} accept >= {cal.knob:<6g} "
                    f"{cal.quality / max(cal.best_quality, 1e-12):6.1%} of {_short(ref)} at "
                    f"{cal.cost_per_call / max(cal.best_cost_per_call, 1e-12):5.1%} of its cost, "
                    f"{'reaches it' if cal.met else 'short of it'}; meets it in {cal.reach_probability or 0:.0%} of resamples"
                )
    best = max(tried, key=lambda t: t.key)
    if log is not None:
        log(f"  chosen on train: {best.label}")
    return SearchResult(best, tried, ref)
