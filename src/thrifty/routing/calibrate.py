"""Calibration: the knob setting that meets a quality target on a validation set, and its cost.

The target is a fraction of the best single candidate's quality on the same data ("0.99" =
99% of the best model's accuracy, or of a named reference model's). Every policy is swept; the
cheapest setting that meets the target wins, and the result says what it costs against always
using the reference model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from thrifty.routing.features import Embed
from thrifty.routing.labeled import Example
from thrifty.routing.learned import Calibration, RouterArtifact, calibrate_points, label_matrices
from thrifty.routing.policy import POLICIES, Policy


def calibrate(
    art: RouterArtifact,
    examples: Sequence[Example],
    target: float,
    *,
    embed: Embed | None = None,
    p: np.ndarray | None = None,
    policies: Sequence[Policy] = POLICIES,
    reference: str | None = None,
    max_cost: float | None = None,
    confidence: float | None = None,
) -> Calibration | None:
    """The cheapest setting reaching `target` x the quality of `reference` (default: the best
    candidate) on `examples`, or None. `max_cost` caps its cost at that fraction of the
    reference's; `confidence` asks for that share of bootstrap resamples to meet the target."""
    names = art.candidates
    quality, cost = label_matrices(examples, names)
    if p is None:
        p = art.predict([ex.text for ex in examples], embed)
    cal, _ = calibrate_points(
        p,
        quality,
        cost,
        names,
        art.cost_vector(),
        target,
        policies,
        source="validation",
        reference=reference,
        max_cost=max_cost,
        confidence=confidence,
    )
    return cal


def apply(
    art: RouterArtifact, cal: Calibration, examples: Sequence[Example], p: np.ndarray
) -> RouterArtifact:
    """A copy of `art` whose default setting and target curves come from this validation set."""
    from thrifty.routing.policy import sweep

    quality, cost = label_matrices(examples, art.candidates)
    n = len(examples)
    curves: dict[str, list[tuple[float, float, float]]] = {
        pol: [
            (pt.knob, pt.quality, pt.cost / n)
            for pt in sweep(p, quality, cost, art.candidates, pol, art.cost_vector())
        ]
        for pol in POLICIES
    }
    return replace(art, calibration=cal, curves=curves)


def odds(cal: Calibration) -> str:
    """How sure the calibration is, in words (empty when it was not measured)."""
    if cal.reach_probability is None:
        return ""
    asked = "" if cal.confidence is None else f", asked for {cal.confidence:.0%}"
    return f"; meets it in {cal.reach_probability:.0%} of bootstrap resamples of this data{asked}"


def describe(cal: Calibration | None, target: float) -> str:
    if cal is None:
        return f"no setting reaches {target:.1%} of the reference model's quality on this data"
    cap = "" if cal.max_cost is None else f" within {cal.max_cost:.0%} of its cost"
    if not cal.met:
        return (
            f"target {target:.1%} of the reference model's quality ({cal.best_quality:.4f}){cap} is out of reach on this data; "
            f"the best setting, policy {cal.policy} knob {cal.knob:g}, reaches {cal.quality:.4f} "
            f"({cal.quality / cal.best_quality:.1%}) at ${cal.cost_per_call:.6f} a call" + odds(cal)
        )
    saving = 1 - cal.cost_per_call / cal.best_cost_per_call if cal.best_cost_per_call else 0.0
    return (
        f"policy {cal.policy}, knob {cal.knob:g}: quality {cal.quality:.4f} "
        f"({cal.quality / cal.best_quality:.1%} of the reference model's {cal.best_quality:.4f}, target {target:.1%}{cap}) "
        f"at ${cal.cost_per_call:.6f} a call vs ${cal.best_cost_per_call:.6f} for the reference model "
        f"({1 - saving:.1%} of its cost, {saving:.1%} saved)" + odds(cal)
    )
