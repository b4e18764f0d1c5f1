"""How a router turns predicted qualities into a choice, and what a choice costs on labeled data.

Three policies, each one knob:
- `threshold`: the cheapest candidate whose predicted P(good) clears `t` (none does: the one
  predicted best). Raising `t` buys quality with money.
- `utility`: the candidate maximising P(good) - lambda * cost / max cost. Raising lambda saves
  money. It ranks by expected gain, so it suits two-model routes (weak vs strong).
- `margin`: the cheapest candidate predicted within `m` of the best prediction for this prompt.
  When every model is likely to fail (or to succeed) it does not pay for the dear one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Policy = Literal["threshold", "utility", "margin"]
POLICIES: tuple[Policy, ...] = ("threshold", "utility", "margin")


def choose(p: np.ndarray, costs: np.ndarray, policy: Policy, knob: float) -> np.ndarray:
    """Index of the chosen candidate for each row of `p` (n, k), given per-candidate `costs` (k,)."""
    p = np.atleast_2d(p)
    costs = np.asarray(costs, dtype=np.float64)
    if policy == "threshold":
        order = np.argsort(costs, kind="stable")
        clears = p[:, order] >= knob
        first = np.argmax(clears, axis=1)
        chosen = order[first]
        none = ~clears.any(axis=1)
        if none.any():
            # Nobody clears the bar: the predicted best, the cheaper one on ties.
            scores = p[none][:, order] - 1e-9 * np.arange(len(order))
            chosen[none] = order[np.argmax(scores, axis=1)]
        return chosen
    if policy == "utility":
        scale = float(costs.max()) or 1.0
        return np.argmax(p - knob * (costs / scale)[None, :], axis=1)
    if policy == "margin":
        order = np.argsort(costs, kind="stable")
        near = p[:, order] >= p.max(axis=1, keepdims=True) - knob - 1e-12
        return order[np.argmax(near, axis=1)]
    raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")


def knob_grid(policy: Policy) -> np.ndarray:
    """The settings a calibration or a curve sweeps, from cheapest to most expensive."""
    # Steps of 0.001 where predictions live: on a few thousand prompts a coarser step moves
    # whole percents of traffic at once, and the cheapest setting reaching a target overshoots.
    if policy == "threshold":
        return np.round(np.linspace(0.0, 1.0, 1001), 4)
    if policy == "margin":
        return np.round(np.linspace(0.5, 0.0, 501), 4)
    return np.round(np.concatenate([np.geomspace(50, 0.5, 60), np.linspace(0.499, 0.0, 500)]), 5)


@dataclass
class Point:
    """One setting and what it achieves on a labeled set."""

    knob: float
    quality: float  # mean quality per prompt
    cost: float  # total USD over the set
    share: dict[str, float]  # fraction of prompts sent to each candidate


def outcome(
    choice: np.ndarray, quality: np.ndarray, cost: np.ndarray, names: Sequence[str], knob: float = 0.0
) -> Point:
    """Mean quality, total cost and traffic shares of `choice` on a labeled set (n, k)."""
    rows = np.arange(len(choice))
    counts = np.bincount(choice, minlength=len(names)) / max(len(choice), 1)
    return Point(
        knob=float(knob),
        quality=float(quality[rows, choice].mean()) if len(choice) else 0.0,
        cost=float(cost[rows, choice].sum()),
        share={n: float(c) for n, c in zip(names, counts, strict=True)},
    )


def sweep(
    p: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    names: Sequence[str],
    policy: Policy,
    expected_costs: np.ndarray,
) -> list[Point]:
    """Every setting of `policy`'s knob and its outcome, cheapest first."""
    return [
        outcome(choose(p, expected_costs, policy, float(k)), quality, cost, names, float(k))
        for k in knob_grid(policy)
    ]


def cheapest_meeting(points: Sequence[Point], quality_target: float) -> Point | None:
    """The cheapest point whose quality reaches `quality_target` (ties: the better one)."""
    ok = [pt for pt in points if pt.quality >= quality_target - 1e-12]
    if not ok:
        return None
    return min(ok, key=lambda pt: (pt.cost, -pt.quality))
