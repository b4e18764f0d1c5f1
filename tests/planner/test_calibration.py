"""The efficiency factors are fitted on the calibration split only and predict the held-out one."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest
import yaml

from thrifty.planner.calibration import Point, accuracy, calibrated, fit, load_points, predict
from thrifty.planner.catalog import load_catalog
from thrifty.planner.roofline import ROOFLINE
from thrifty.planner.sanity import check_point

POINTS = load_points()
CALIBRATION = [p for p in POINTS if p.split == "calibration"]
HELD_OUT = [p for p in POINTS if p.split == "held_out"]


def test_every_point_is_cited_and_the_splits_do_not_share_a_series() -> None:
    assert len(CALIBRATION) >= 20 and len(HELD_OUT) >= 20
    for p in POINTS:
        assert "http" in p.source, p.series
    assert not {p.series for p in CALIBRATION} & {p.series for p in HELD_OUT}

    # held-out points come from setups the fit never sees (other GPUs, models, engines, loads or lengths)
    def setup(p: Point) -> tuple[object, ...]:
        return (p.model, p.gpu, p.n_gpus, p.kind, p.input_tokens, p.output_tokens, p.engine, p.concurrency)

    assert not {setup(p) for p in CALIBRATION} & {setup(p) for p in HELD_OUT}


def test_the_fit_never_reads_the_held_out_points() -> None:
    """Changing every held-out figure leaves the calibrated factors exactly as they were."""
    text = resources.files("thrifty.planner").joinpath("data/measurements.yaml").read_text()
    doc = yaml.safe_load(text)
    for s in doc["series"]:
        if s["split"] == "held_out":
            s["rows"] = [[i, o, v * 3] for i, o, v in s["rows"]]
    changed = load_points(yaml.safe_dump(doc))
    assert fit([p for p in changed if p.split == "calibration"]) == calibrated()


def test_calibrated_factors_are_physical() -> None:
    e = calibrated()
    assert 0.3 < e.bandwidth <= 1 and 0.3 < e.kv_bandwidth <= 1 and 0.2 < e.compute <= 1
    assert 0 <= e.allreduce_s < 100e-6 and e.overlap is False


def test_held_out_points_are_predicted_within_20_percent_mostly_and_far_better_than_the_roofline() -> None:
    acc = accuracy(HELD_OUT, calibrated())
    within = sum(abs(a.error) <= 0.20 for a in acc)
    assert within / len(acc) >= 0.8, [(a.point.label, round(a.error, 3)) for a in acc if abs(a.error) > 0.2]
    mean = sum(abs(a.error) for a in acc) / len(acc)
    roof = sum(abs(a.roofline_error) for a in acc) / len(acc)
    assert mean < 0.15 and roof > 3 * mean


def test_the_uncalibrated_roofline_is_optimistic_on_every_published_point() -> None:
    for p in POINTS:
        predicted = predict(p, ROOFLINE)
        if p.kind == "output_tps":
            assert predicted > p.value, p.label
        else:
            assert predicted < p.value, p.label
        assert check_point(p, load_catalog()) is None


def test_a_published_point_that_beats_the_roofline_is_flagged() -> None:
    nim = next(p for p in POINTS if p.series == "nim-70b-c1-itl-5000in")
    impossible = dataclasses.replace(nim, value=5.0)  # 5 ms/token for 35 GB per GPU at 3.35 TB/s
    flag = check_point(impossible, load_catalog())
    assert flag is not None and flag.bound == pytest.approx(predict(nim, ROOFLINE))
