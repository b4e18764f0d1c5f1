from __future__ import annotations

import numpy as np

from thrifty.routing.evaluate import apgr, oracle_choice
from thrifty.routing.policy import Point, cheapest_meeting, choose, outcome

COSTS = np.array([10.0, 1.0, 3.0])  # candidates a (dear), b (cheap), c (middle)


def test_threshold_takes_the_cheapest_that_clears() -> None:
    p = np.array([[0.9, 0.2, 0.7], [0.9, 0.8, 0.1], [0.3, 0.1, 0.2]])
    assert choose(p, COSTS, "threshold", 0.6).tolist() == [2, 1, 0]
    # At 0 everything clears: always the cheapest; above every prediction: the predicted best.
    assert choose(p, COSTS, "threshold", 0.0).tolist() == [1, 1, 1]
    assert choose(p, COSTS, "threshold", 0.95).tolist() == [0, 0, 0]


def test_utility_trades_quality_for_cost() -> None:
    p = np.array([[0.9, 0.5, 0.85]])
    assert choose(p, COSTS, "utility", 0.0).tolist() == [0]
    assert choose(p, COSTS, "utility", 0.1).tolist() == [2]  # 0.85-0.03 beats 0.9-0.1
    assert choose(p, COSTS, "utility", 10.0).tolist() == [1]


def test_outcome_and_target() -> None:
    q = np.array([[1, 0, 1], [1, 1, 0]], dtype=float)
    c = np.array([[10, 1, 3], [10, 1, 3]], dtype=float)
    pt = outcome(np.array([2, 1]), q, c, ["a", "b", "c"])
    assert (pt.quality, pt.cost, pt.share) == (1.0, 4.0, {"a": 0.0, "b": 0.5, "c": 0.5})
    assert oracle_choice(q, c).tolist() == [2, 1]
    pts = [Point(0, 0.5, 2, {}), Point(1, 1.0, 4, {}), Point(2, 1.0, 20, {})]
    assert cheapest_meeting(pts, 0.9) is pts[1]
    assert cheapest_meeting(pts, 1.1) is None


def test_apgr() -> None:
    weak, strong = Point(0, 0.6, 10, {}), Point(1, 0.8, 110, {})
    # A router that recovers the whole gap at the weak model's cost scores 1, random routing 0.5.
    assert apgr([Point(0, 0.8, 10, {})], weak, strong) == 1.0
    random = [Point(a, 0.6 + 0.2 * a, 10 + 100 * a, {}) for a in np.linspace(0, 1, 101)]
    assert abs(apgr(random, weak, strong) - 0.5) < 0.01
    assert apgr([], weak, strong) == 0.0


def test_margin_takes_the_cheapest_near_the_best() -> None:
    p = np.array([[0.9, 0.5, 0.85], [0.2, 0.15, 0.1]])
    assert choose(p, COSTS, "margin", 0.0).tolist() == [0, 0]
    assert choose(p, COSTS, "margin", 0.06).tolist() == [2, 1]  # b is within 0.06 of a on the hard row
    assert choose(p, COSTS, "margin", 0.5).tolist() == [1, 1]


def test_knob_grids_step_finely_where_predictions_live() -> None:
    from thrifty.routing.policy import knob_grid

    for pol in ("threshold", "margin"):
        assert np.abs(np.diff(knob_grid(pol))).max() <= 0.001 + 1e-9  # type: ignore[arg-type]
    util = knob_grid("utility")
    assert np.abs(np.diff(util[util < 0.5])).max() <= 0.001 + 1e-9 and util.max() == 50
