"""Offline cascades on recorded answers: simulation, training, calibration, evaluation, artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thrifty.routing.cascade_eval import (
    CascadeArtifact,
    CascadeConfig,
    calibrate_on,
    evaluate_cascade,
    load_cascade,
    parse_stages,
    simulate,
    train_cascade,
)
from thrifty.routing.datasets import convert_routellm_gsm8k
from thrifty.routing.labeled import Example, split_fixed
from thrifty.routing.learned import ArtifactError

MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def test_every_answer_asked_for_is_paid_for() -> None:
    cfg = CascadeConfig([["a", "b"], ["c"]])
    quality = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    cost = np.array([[1.0, 2.0, 10.0]] * 3)
    after_first = np.array([[0.9, 0.1], [0.3, 0.2], [0.1, 0.8]])
    last = np.array([[0.0, 0.0, 1.0]] * 3)
    served, stop, paid = simulate([after_first, last], cfg, quality, cost, knob=0.5)
    # Row 0: a is sure enough; row 1: nobody is, so c; row 2: b is the best of the pool.
    assert served.tolist() == [0, 2, 1] and stop.tolist() == [0, 1, 0]
    assert paid.tolist() == [3.0, 13.0, 3.0]
    served, _, paid = simulate([after_first, last], cfg, quality, cost, knob=0.0)
    assert served.tolist() == [0, 0, 1] and paid.sum() == 9.0


def test_config_checks() -> None:
    assert parse_stages("a, b > c") == [["a", "b"], ["c"]]
    with pytest.raises(ValueError, match="two non-empty stages"):
        CascadeConfig([["a"]])
    with pytest.raises(ValueError, match="one stage only"):
        CascadeConfig([["a"], ["a"]])
    with pytest.raises(ValueError, match="unknown kind 'json'"):
        CascadeConfig([["a"], ["b"]], "json")


@pytest.fixture(scope="module")
def gsm8k(routing_data: Path) -> tuple[list[Example], list[Example]]:
    conv = convert_routellm_gsm8k(routing_data / "routellm_gsm8k_responses.csv")
    train, test = split_fixed(conv.examples, 0.8, salt="gsm8k-80-20")
    return train[:400], test[:150]


def test_trained_cascade_beats_the_cheap_model_and_saves_money(
    gsm8k: tuple[list[Example], list[Example]], tmp_path: Path
) -> None:
    train, test = gsm8k
    cfg = CascadeConfig([[MIXTRAL], [GPT4]], "numeric")
    art, oof = train_cascade(train, cfg, target=0.9, max_cost=0.6)
    assert len(oof) == 2 and oof[0].shape == (len(train), 1)
    cal = art.calibration
    assert cal is not None and 0.0 < cal.knob < 1.0
    # The answer signals rank Mixtral's answers: its accepted answers are right more often.
    q = np.array([ex.candidates[MIXTRAL].quality for ex in train])
    accepted = oof[0][:, 0] >= cal.knob
    assert q[accepted].mean() > q.mean() + 0.05
    art.save(tmp_path / "c.pkl")
    again = load_cascade(tmp_path / "c.pkl")
    assert isinstance(again, CascadeArtifact) and again.config.stages == cfg.stages

    rep = evaluate_cascade(again, test)
    assert set(rep.singles) == {MIXTRAL, GPT4} and rep.calibrated is not None
    cheap, strong = rep.singles[MIXTRAL], rep.singles[GPT4]
    assert cheap.quality < rep.calibrated.quality <= 1.0
    assert cheap.cost < rep.calibrated.cost < strong.cost
    # The curve runs from Mixtral alone (accept everything) to GPT-4 for all (plus Mixtral's cost).
    pts = sorted(rep.curves["cascade"], key=lambda p: p.knob)
    assert pts[0].quality == cheap.quality and pts[0].cost == pytest.approx(cheap.cost)
    assert pts[-1].quality == strong.quality and pts[-1].cost == pytest.approx(cheap.cost + strong.cost)
    assert rep.apgr["cascade"] > rep.apgr["random"]

    val = calibrate_on(again, test, 0.9)
    assert val.source == "validation" and val.target == 0.9


def test_load_refuses_what_is_not_a_cascade(tmp_path: Path) -> None:
    (tmp_path / "x.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ArtifactError, match="not a thrifty cascade artifact"):
        load_cascade(tmp_path / "x.pkl")
    with pytest.raises(ArtifactError, match="not found"):
        load_cascade(tmp_path / "missing.pkl")


def test_recorded_logprobs_are_a_signal_the_scorer_learns(tmp_path: Path) -> None:
    """Labeled lines may carry each answer's mean logprob; where it tells right from wrong, the
    scorer learns to trust it (synthetic data: wrong answers were sampled with low confidence)."""
    from decimal import Decimal

    from thrifty.routing.labeled import Candidate, load_labeled, write_labeled

    rng = np.random.default_rng(0)
    examples = []
    for i in range(200):
        right = bool(rng.random() < 0.6)
        lp = float(rng.normal(-0.2 if right else -1.5, 0.3))
        examples.append(
            Example(
                f"q{i}",
                {
                    "small": Candidate(float(right), Decimal("0.001"), f"It is {i}.\n#### {i}", lp),
                    "large": Candidate(1.0, Decimal("0.01"), f"#### {i}"),
                },
                prompt=f"What is {i}?",
            )
        )
    write_labeled(examples, tmp_path / "lp.jsonl")
    again = load_labeled(tmp_path / "lp.jsonl")
    assert again[0].candidates["small"].mean_logprob == examples[0].candidates["small"].mean_logprob
    art, oof = train_cascade(again, CascadeConfig([["small"], ["large"]], "numeric"), target=0.95)
    q = np.array([ex.candidates["small"].quality for ex in again])
    p = oof[0][:, 0]
    # Nearly every right answer is scored above nearly every wrong one (the ranking's AUC).
    auc = float((p[q == 1][:, None] > p[q == 0][None, :]).mean())
    assert auc > 0.97 and p[q == 1].mean() > 0.8 > 0.2 > p[q == 0].mean()
    assert art.calibration is not None and art.calibration.met


def test_auto_kind_is_settled_once_on_the_training_data(gsm8k: tuple[list[Example], list[Example]]) -> None:
    """Some GSM8K answers end on no number; "auto" still gives every prompt the same features."""
    train, _ = gsm8k
    art, _ = train_cascade(train[:200], CascadeConfig([[MIXTRAL], [GPT4]]), target=0.9)
    assert art.config.kind == "numeric" and art.scorers[0].kind == "numeric"
