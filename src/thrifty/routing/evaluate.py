"""Offline evaluation of a router on labeled data: is it worth more than picking one model?

The router's cost-quality curve (every knob setting) is set against each single model, random
routing between the cheapest and the best model, and the oracle (per prompt, the cheapest
candidate with the best recorded quality). Summary figures: APGR (average performance gap
recovered between the cheapest and the best model, over the cost axis between them), and the
cost the router needs to reach 95% / 99% / 100% of the best model's quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.routing.features import Embed
from thrifty.routing.labeled import Example
from thrifty.routing.learned import RouterArtifact, label_matrices
from thrifty.routing.policy import POLICIES, Point, Policy, cheapest_meeting, choose, outcome, sweep

FRACTIONS = (0.95, 0.99, 1.0)


@dataclass
class Report:
    names: list[str]
    n: int
    singles: dict[str, Point]
    oracle: Point
    weak: str
    strong: str
    curves: dict[str, list[Point]]
    calibrated: Point | None
    calibrated_policy: str | None
    apgr: dict[str, float]
    reach: dict[float, Point | None]  # fraction of the best quality -> cheapest router point
    random: list[Point] = field(default_factory=list)

    @property
    def best(self) -> Point:
        return self.singles[self.strong]

    def strong_share_for(self, fraction: float) -> float | None:
        """Fewest calls to the best model with which the router reaches `fraction` of its quality."""
        goal = fraction * self.best.quality
        shares = [
            pt.share.get(self.strong, 0.0)
            for c in self.curves.values()
            for pt in c
            if pt.quality >= goal - 1e-12
        ]
        return min(shares) if shares else None

    def to_dict(self) -> dict[str, Any]:
        def pt(p: Point | None) -> dict[str, Any] | None:
            return (
                None
                if p is None
                else {"knob": p.knob, "quality": p.quality, "cost": p.cost, "share": p.share}
            )

        return {
            "n": self.n,
            "singles": {k: pt(v) for k, v in self.singles.items()},
            "oracle": pt(self.oracle),
            "weak": self.weak,
            "strong": self.strong,
            "calibrated": pt(self.calibrated),
            "calibrated_policy": self.calibrated_policy,
            "apgr": self.apgr,
            "reach": {str(k): pt(v) for k, v in self.reach.items()},
        }


def oracle_choice(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per row: the cheapest candidate among those with the row's best quality."""
    best = quality.max(axis=1, keepdims=True)
    masked = np.where(quality >= best - 1e-12, cost, np.inf)
    return np.argmin(masked, axis=1)


def apgr(points: Sequence[Point], weak: Point, strong: Point, steps: int = 100) -> float:
    """Average performance gap recovered over budgets from the weak to the strong model's cost.

    At each budget the router is credited with its best point not costing more (the weak
    model alone when none fits); PGR = (quality - weak) / (strong - weak).
    """
    gap = strong.quality - weak.quality
    span = strong.cost - weak.cost
    if gap <= 0 or span <= 0:
        return float("nan")
    total = 0.0
    for b in np.linspace(0.0, 1.0, steps + 1):
        budget = weak.cost + b * span
        fits = [p.quality for p in points if p.cost <= budget + 1e-12]
        total += (max(fits + [weak.quality]) - weak.quality) / gap
    return total / (steps + 1)


def evaluate(
    art: RouterArtifact,
    examples: Sequence[Example],
    *,
    embed: Embed | None = None,
    p: np.ndarray | None = None,
    policy: Policy | None = None,
    knob: float | None = None,
) -> Report:
    names = list(art.candidates)
    missing = sorted({n for ex in examples for n in names if n not in ex.candidates})
    if missing:
        raise ValueError(f"the evaluation data lacks the router's candidates: {', '.join(missing)}")
    quality, cost = label_matrices(examples, names)
    if p is None:
        p = art.predict([ex.text for ex in examples], embed)
    expected = art.cost_vector()
    singles = {n: outcome(np.full(len(examples), j), quality, cost, names) for j, n in enumerate(names)}
    oracle = outcome(oracle_choice(quality, cost), quality, cost, names)
    strong = max(names, key=lambda n: (singles[n].quality, -singles[n].cost))
    weak = min(names, key=lambda n: (singles[n].cost, -singles[n].quality))
    curves: dict[str, list[Point]] = {pol: sweep(p, quality, cost, names, pol, expected) for pol in POLICIES}
    cal_policy: str | None = policy or (art.calibration.policy if art.calibration else None)
    cal_knob = knob if knob is not None else (art.calibration.knob if art.calibration else None)
    calibrated = None
    if cal_policy is not None and cal_knob is not None:
        calibrated = outcome(choose(p, expected, cal_policy, cal_knob), quality, cost, names, cal_knob)  # type: ignore[arg-type]
    all_points = [pt for c in curves.values() for pt in c]
    ws, ss = singles[weak], singles[strong]
    rand = [
        Point(
            float(a),
            (1 - a) * ws.quality + a * ss.quality,
            (1 - a) * ws.cost + a * ss.cost,
            {weak: 1 - a, strong: a},
        )
        for a in np.linspace(0, 1, 21)
    ]
    return Report(
        names=names,
        n=len(examples),
        singles=singles,
        oracle=oracle,
        weak=weak,
        strong=strong,
        curves=curves,
        calibrated=calibrated,
        calibrated_policy=cal_policy,
        apgr={**{pol: apgr(c, ws, ss) for pol, c in curves.items()}, "random": apgr(rand, ws, ss)},
        reach={f: cheapest_meeting(all_points, f * ss.quality) for f in FRACTIONS},
        random=rand,
    )


def render_table(rep: Report) -> Any:
    """A rich Table of the report."""
    from rich.table import Table

    best = rep.best
    t = Table(title=f"router vs single models on {rep.n} prompts (best: {rep.strong})")
    t.add_column("what")
    t.add_column("quality", justify="right")
    t.add_column("% of best", justify="right")
    t.add_column("cost $", justify="right")
    t.add_column("% of best cost", justify="right")

    def row(label: str, pt: Point | None) -> None:
        if pt is None:
            t.add_row(label, "-", "-", "not reached", "-")
            return
        rq = 100 * pt.quality / best.quality if best.quality else float("nan")
        rc = 100 * pt.cost / best.cost if best.cost else float("nan")
        t.add_row(label, f"{pt.quality:.4f}", f"{rq:.1f}", f"{pt.cost:.4f}", f"{rc:.1f}")

    for name, pt in sorted(rep.singles.items(), key=lambda kv: kv[1].cost):
        row(name, pt)
    row("oracle", rep.oracle)
    if rep.calibrated is not None:
        row(f"router ({rep.calibrated_policy} {rep.calibrated.knob:g}, calibrated)", rep.calibrated)
    for f, reached in rep.reach.items():
        row(f"router, cheapest reaching {f:.0%} of best", reached)
    for pol, v in rep.apgr.items():
        t.add_row(f"APGR {pol}", f"{v:.3f}", "", "", "")
    return t


def plot(rep: Report, path: str | Path, title: str = "") -> None:
    """Cost-quality curves as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for pol, pts in rep.curves.items():
        ordered = sorted(pts, key=lambda p: p.cost)
        ax.plot([p.cost for p in ordered], [p.quality for p in ordered], "-", lw=1.6, label=f"router ({pol})")
    ax.plot([p.cost for p in rep.random], [p.quality for p in rep.random], "--", color="grey", label="random")
    for name, pt in rep.singles.items():
        ax.scatter([pt.cost], [pt.quality], s=22)
        ax.annotate(
            name.split("/")[-1], (pt.cost, pt.quality), fontsize=7, xytext=(3, 2), textcoords="offset points"
        )
    ax.scatter(
        [rep.oracle.cost],
        [rep.oracle.quality],
        marker="*",
        s=120,
        color="gold",
        edgecolor="k",
        label="oracle",
    )
    if rep.calibrated is not None:
        ax.scatter(
            [rep.calibrated.cost],
            [rep.calibrated.quality],
            marker="D",
            s=40,
            color="red",
            label="router (calibrated)",
        )
    costs = [p.cost for p in rep.singles.values() if p.cost > 0]
    if costs and max(costs) / min(costs) > 50:  # many models over orders of magnitude of price
        ax.set_xscale("log")
    ax.set_xlabel("total cost (USD)")
    ax.set_ylabel("mean quality")
    ax.set_title(title or f"cost-quality on {rep.n} prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
