"""Bootstrap odds of meeting a target, and calibrations that cap the cost or ask for confidence."""

from __future__ import annotations

import numpy as np

from thrifty.routing.learned import calibrate_points
from thrifty.routing.uncertainty import reach_rates, resample_counts


def test_resamples_keep_the_row_count() -> None:
    counts = resample_counts(50, 30, seed=1)
    assert counts.shape == (30, 50) and np.all(counts.sum(axis=1) == 50)
    assert np.array_equal(counts, resample_counts(50, 30, seed=1))


def test_a_setting_at_the_edge_of_its_target_meets_it_about_half_the_time() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    ref = (rng.random(n) < 0.8).astype(float)
    clearly_better = np.maximum(ref, (rng.random(n) < 0.5).astype(float))
    # Same accuracy as the reference overall, but right and wrong on other rows.
    edge = ref.copy()
    edge[np.flatnonzero(ref == 1)[:150]] = 0
    edge[np.flatnonzero(ref == 0)[:150]] = 1
    assert edge.mean() == ref.mean()
    cost = np.ones(n)
    rates = reach_rates(
        np.column_stack([clearly_better, edge]), np.column_stack([cost, cost]), ref, cost * 10, 1.0
    )
    assert rates[0] == 1.0 and 0.3 < rates[1] < 0.7
    # A cost cap below what a setting spends fails it in every resample.
    capped = reach_rates(clearly_better[:, None], cost[:, None], ref, cost * 10, 1.0, max_cost=0.05)
    assert capped[0] == 0.0


def _two_models(n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cheap model right on easy prompts, a dear one right more often; P(good) that knows it."""
    rng = np.random.default_rng(3)
    easy = rng.random(n)
    cheap = (rng.random(n) < easy).astype(float)
    dear = (rng.random(n) < 0.5 + 0.5 * easy).astype(float)
    p = np.column_stack([easy, 0.5 + 0.5 * easy])
    quality = np.column_stack([cheap, dear])
    cost = np.column_stack([np.full(n, 1.0), np.full(n, 20.0)])
    return p, quality, cost


def test_confidence_pays_more_for_better_odds() -> None:
    p, quality, cost = _two_models()
    names, expected = ["cheap", "dear"], np.array([1.0, 20.0])
    plain, _ = calibrate_points(p, quality, cost, names, expected, 0.95, ("threshold",), reference="dear")
    sure, _ = calibrate_points(
        p, quality, cost, names, expected, 0.95, ("threshold",), reference="dear", confidence=0.9
    )
    assert plain is not None and sure is not None and plain.met and sure.met
    assert plain.reach_probability is not None and sure.reach_probability is not None
    assert sure.reach_probability >= 0.9 > plain.reach_probability
    assert sure.cost_per_call > plain.cost_per_call and sure.quality > plain.quality
    assert 0.0 < plain.reference_share < sure.reference_share < 1.0


def test_a_cost_cap_keeps_the_best_setting_it_allows() -> None:
    p, quality, cost = _two_models()
    names, expected = ["cheap", "dear"], np.array([1.0, 20.0])
    cal, curves = calibrate_points(
        p, quality, cost, names, expected, 1.0, ("threshold",), reference="dear", max_cost=0.3
    )
    assert cal is not None and not cal.met and cal.max_cost == 0.3
    assert cal.cost_per_call <= 0.3 * cal.best_cost_per_call + 1e-12
    allowed = [pt for pt in curves["threshold"] if pt.cost <= 0.3 * cost[:, 1].sum()]
    assert cal.quality == max(pt.quality for pt in allowed)
    uncapped, _ = calibrate_points(p, quality, cost, names, expected, 1.0, ("threshold",), reference="dear")
    assert uncapped is not None and uncapped.met and uncapped.cost_per_call > cal.cost_per_call
