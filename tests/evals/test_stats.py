"""Bootstrap intervals and the paired drop the gate decides on."""

from __future__ import annotations

import pytest

from thrifty.evals.stats import mean_ci, paired_delta


def test_mean_interval_brackets_the_mean() -> None:
    iv = mean_ci([1.0] * 50 + [0.0] * 50)
    assert iv.mean == 0.5 and iv.n == 100
    assert 0.38 < iv.low < 0.45 and 0.55 < iv.high < 0.62
    assert mean_ci([]).n == 0


def test_identical_configs_never_look_worse() -> None:
    scores = [1.0, 0.0, 1.0, 1.0] * 25
    d = paired_delta(scores, scores, max_drop=0.01)
    assert d.delta.mean == 0 and d.p_drop_exceeds == 0.0


def test_a_clear_drop_is_confident() -> None:
    a = [1.0] * 200
    b = [1.0] * 180 + [0.0] * 20  # 10 points worse
    d = paired_delta(a, b, max_drop=0.01)
    assert d.delta.mean == pytest.approx(-0.10)
    assert d.p_drop_exceeds > 0.99 and d.drop_lower_bound > 0.05


def test_one_regression_in_twenty_is_not_confident() -> None:
    a = [1.0] * 20
    b = [1.0] * 19 + [0.0]  # 5 points worse on paper, but one item could be noise
    d = paired_delta(a, b, max_drop=0.01)
    # P(at least one regressed item in a resample) = 1 - 0.95^20 = 0.64
    assert 0.55 < d.p_drop_exceeds < 0.73


def test_unpaired_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        paired_delta([1.0], [1.0, 0.0])
