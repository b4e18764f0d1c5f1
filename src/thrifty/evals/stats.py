"""Bootstrap confidence intervals, so that "B is worse than A" is a claim with a margin.

Eval sets are small (tens to a few thousand items) and per-item scores are mostly 0/1, so a
normal approximation is poor near 0% and 100%; a percentile bootstrap makes no such
assumption. Comparisons are paired: both configs answer the same items, so the resampling
draws items, not scores, which removes the item-difficulty variance from the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def scaled(self, factor: float) -> Interval:
        return Interval(self.mean * factor, self.low * factor, self.high * factor, self.n)

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def _resample_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means: np.ndarray = values[idx].mean(axis=1)
    return means


def mean_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """The mean of `values` with a two-sided percentile bootstrap interval."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    means = _resample_means(arr, resamples, seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(arr.mean()), float(low), float(high), int(arr.size))


@dataclass(frozen=True)
class PairedDelta:
    """Quality of B minus quality of A over the items both graded, in [−1, 1]."""

    delta: Interval
    #: share of bootstrap resamples in which A − B exceeds the tolerance
    p_drop_exceeds: float
    #: one-sided lower bound (at the gate's confidence) on the drop A − B
    drop_lower_bound: float


def paired_delta(
    a: Sequence[float],
    b: Sequence[float],
    max_drop: float = 0.0,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedDelta:
    """Bootstrap the paired difference b − a; `max_drop` is a fraction (0.01 = 1 point)."""
    arr_a = np.asarray(a, dtype=np.float64)
    arr_b = np.asarray(b, dtype=np.float64)
    if arr_a.shape != arr_b.shape:
        raise ValueError("paired samples must have the same length")
    if arr_a.size == 0:
        nan = float("nan")
        return PairedDelta(Interval(nan, nan, nan, 0), 0.0, nan)
    diffs = arr_b - arr_a
    means = _resample_means(diffs, resamples, seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    drops = -means
    p_exceeds = float(np.mean(drops > max_drop))
    lower = float(np.percentile(drops, (1 - confidence) * 100))
    return PairedDelta(Interval(float(diffs.mean()), float(low), float(high), int(diffs.size)), p_exceeds, lower)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
