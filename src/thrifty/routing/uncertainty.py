"""How sure a calibration is: bootstrap the calibration rows and count how often a setting meets
its target there.

A setting picked as "the cheapest that reaches the target" on one labeled set sits, by
construction, right at the edge of the target on that set; on fresh traffic it meets it about
half the time. Resampling the calibration rows says how likely a setting is to meet the target
on a set like it, so a calibration can ask for a confidence (pay a little more for a setting
that meets the target in, say, 80% of resamples) and every calibration can state its odds.
"""

from __future__ import annotations

import numpy as np


def resample_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) how many times each row appears in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def reach_rates(
    routed_quality: np.ndarray,
    routed_cost: np.ndarray,
    reference_quality: np.ndarray,
    reference_cost: np.ndarray,
    target: float,
    max_cost: float | None = None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """For each setting (a column of `routed_quality` / `routed_cost`, shape (n, m)), the share of
    bootstrap resamples in which its mean quality reaches `target` x the reference model's (and,
    with `max_cost`, its cost stays within that fraction of the reference model's)."""
    rq = np.asarray(routed_quality, dtype=np.float64).reshape(len(reference_quality), -1)
    rc = np.asarray(routed_cost, dtype=np.float64).reshape(len(reference_quality), -1)
    w = counts if counts is not None else resample_counts(len(rq), 400)
    ref_q = w @ np.asarray(reference_quality, dtype=np.float64)  # (B,) totals; n cancels
    ok = (w @ rq) >= target * ref_q[:, None] - 1e-9
    if max_cost is not None:
        ref_c = w @ np.asarray(reference_cost, dtype=np.float64)
        ok &= (w @ rc) <= max_cost * ref_c[:, None] + 1e-12
    return np.asarray(ok.mean(axis=0))
