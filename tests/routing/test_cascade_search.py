"""Choosing a cascade from the training data: the candidate stages, the scorer family, the
threshold policy, and the whole search (also through `thrifty router train --cascade auto`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from thrifty.routing.cascade_eval import CascadeConfig, _fit_stage, _points, calibrate_cascade, load_cascade
from thrifty.routing.cascade_search import candidate_pools, search_cascade, strongest
from thrifty.routing.cli import router
from thrifty.routing.labeled import Candidate, Example, write_labeled
from thrifty.routing.learned import _folds

#: (accuracy, cost per call) of each model of the synthetic task
MODELS = {
    "tiny": (0.55, "0.0001"),
    "small": (0.75, "0.0002"),
    "mid": (0.65, "0.0004"),
    "pricey": (0.75, "0.008"),  # too dear for a cheap stage under a 30% cap
    "large": (0.85, "0.05"),
}


def synthetic(n: int, seed: int = 0) -> list[Example]:
    """Multiple-choice prompts: a right answer picks the key; a wrong one a random other option,
    so cheap models that agree are usually right."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        key = "ABCD"[int(rng.integers(4))]
        cands = {}
        for m, (acc, cost) in MODELS.items():
            right = bool(rng.random() < acc)
            pick = key if right else str(rng.choice([o for o in "ABCD" if o != key]))
            cands[m] = Candidate(float(right), Decimal(cost), f"The answer is {pick}.")
        out.append(Example(f"q{i}", cands, prompt=f"Question {i}? A. w B. x C. y D. z"))
    return out


def test_candidate_stages_leave_room_to_escalate() -> None:
    ex = synthetic(300)
    assert strongest(ex, list(MODELS)) == "large"
    pools = candidate_pools(ex, "large", 0.3)
    # best first, each stage cheapest model first; in the whole cap "pricey" fits, in half of it not
    assert pools == [
        ["small"], ["small", "pricey"], ["small", "mid", "pricey"], ["tiny", "small", "mid", "pricey"],
        ["small", "mid"], ["tiny", "small", "mid"],
    ]
    assert candidate_pools(ex, "large", 0.01) == [["small"], ["tiny", "small"]]  # mid does not fit


def test_the_scorer_family_is_the_one_that_cross_validates_better() -> None:
    """Right answers are those where two signals agree (an interaction a linear model cannot
    draw): the boosted trees win; on a linear signal the logistic regression is kept or ties."""
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = np.column_stack([a, b, rng.normal(size=n)]).astype(float)[:, None, :]
    q = (a == b).astype(float)[:, None]
    split = _folds(n, 5, 0, 1)
    _, oof, _, which = _fit_stage(x, q, split)
    assert which == "boosted" and ((oof[:, 0] > 0.5) == (q[:, 0] == 1)).mean() > 0.95
    _, _, _, which = _fit_stage(x, q, split, ("logistic",))
    assert which == "logistic"
    with pytest.raises(ValueError, match="no scorer"):
        _fit_stage(x, q, split, ())


def test_the_likeliest_threshold_buys_a_margin_the_cheapest_lacks() -> None:
    ex = synthetic(400)
    from thrifty.routing.cascade_eval import train_cascade
    from thrifty.routing.learned import label_matrices

    cfg = CascadeConfig([["tiny", "small", "mid"], ["large"]], "choice")
    _, oof = train_cascade(ex, cfg, target=1.0, max_cost=0.3)
    q, c = label_matrices(ex, cfg.models)
    pts, rq, rc = _points(oof, cfg, q, c)
    cheap = calibrate_cascade(pts, rq, rc, q[:, -1], c[:, -1], 1.0, max_cost=0.3)
    likely = calibrate_cascade(pts, rq, rc, q[:, -1], c[:, -1], 1.0, max_cost=0.3, policy="likeliest")
    assert cheap.met and likely.met
    assert (likely.reach_probability or 0) > (cheap.reach_probability or 0)
    assert likely.quality >= cheap.quality and likely.cost_per_call >= cheap.cost_per_call
    with pytest.raises(ValueError, match="unknown threshold policy"):
        calibrate_cascade(pts, rq, rc, q[:, -1], c[:, -1], 1.0, policy="bravest")


def _routerbench_csv(examples: list[Example], path: Path) -> None:
    """The examples in RouterBench's column layout (what the held-out files look like)."""
    import csv

    models = list(examples[0].candidates)
    cols = ["sample_id", "prompt", "eval_name", *models]
    cols += [f"{m}|model_response" for m in models] + [f"{m}|total_cost" for m in models]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for ex in examples:
            row = {"sample_id": ex.id, "prompt": repr([ex.text]), "eval_name": "synthetic-mc"}
            for m, cand in ex.candidates.items():
                row |= {m: cand.quality, f"{m}|model_response": repr([cand.response]), f"{m}|total_cost": cand.cost}
            w.writerow(row)


def test_search_on_a_routerbench_file_keeps_the_candidate_likeliest_to_meet_the_target(tmp_path: Path) -> None:
    """The held-out path: a RouterBench-format multiple-choice task, trained and chosen on its
    train file alone, then measured once on its test file."""
    from thrifty.routing.cascade_eval import evaluate_cascade
    from thrifty.routing.datasets import convert_routerbench

    _routerbench_csv(synthetic(400), tmp_path / "mc_train.csv")
    _routerbench_csv(synthetic(300, seed=1), tmp_path / "mc_test.csv")
    train = convert_routerbench(tmp_path / "mc_train.csv").examples
    test = convert_routerbench(tmp_path / "mc_test.csv").examples
    assert len(train) == 400 and train[0].candidates["small"].response.startswith("The answer is")
    lines: list[str] = []
    found = search_cascade(train, target=1.0, max_cost=0.3, priors=(False,), log=lines.append)
    assert found.reference == "large" and len(found.tried) == len(candidate_pools(train, "large", 0.3))
    assert found.best.art.config.kind == "choice"  # settled from the answers
    # agreement between cheap models is the signal: a stage of one loses to a stage of several
    assert len(found.best.art.config.stages[0]) >= 3 and found.best.art.config.stages[1] == ["large"]
    cal = found.best.art.calibration
    assert cal is not None and cal.met and cal.cost_per_call <= 0.3 * cal.best_cost_per_call
    assert any("chosen on train" in line for line in lines)
    rep = evaluate_cascade(found.best.art, test)
    assert rep.calibrated is not None
    ref = rep.singles["large"]
    assert rep.calibrated.quality >= ref.quality and rep.calibrated.cost <= 0.3 * ref.cost


def test_cli_train_cascade_auto(tmp_path: Path) -> None:
    write_labeled(synthetic(300), tmp_path / "train.jsonl")
    res = CliRunner().invoke(
        router,
        ["train", "--data", str(tmp_path / "train.jsonl"), "-o", str(tmp_path / "c.pkl"), "--cascade", "auto"]
        + ["--target", "1.0", "--max-cost", "0.3"],
    )
    assert res.exit_code == 0, res.output
    assert "candidate cascades, out of fold" in res.output and "chosen on train" in res.output
    assert "stages " in res.output and " > large" in res.output
    art = load_cascade(tmp_path / "c.pkl")
    assert art.reference == "large" and art.calibration is not None and art.calibration.met
