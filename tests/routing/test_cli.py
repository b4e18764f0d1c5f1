"""`thrifty router` end to end on the real MBPP files (structural features keep it fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from thrifty.routing.cli import router


@pytest.fixture(scope="module")
def converted(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    for split in ("train", "test"):
        res = runner.invoke(
            router,
            [
                "convert",
                "--from",
                "routerbench",
                str(routing_data / "routerbench" / f"mbpp_{split}.csv"),
                "-o",
                str(d / f"{split}.jsonl"),
            ],
        )
        assert res.exit_code == 0, res.output
    return d


def test_convert_reports_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "mmlu_x.csv"
    src.write_text('prompt,gpt-4-1106-preview\n"Q1",True\n"Q2",perhaps\n')
    res = CliRunner().invoke(
        router, ["convert", "--from", "routellm-mmlu", str(src), "-o", str(tmp_path / "o.jsonl")]
    )
    assert res.exit_code == 0
    assert "wrote 1 examples" in res.output
    assert f"{src}:3: ValueError: correctness 'perhaps'" in res.output


def test_train_calibrate_eval(converted: Path) -> None:
    runner = CliRunner()
    art = converted / "router.pkl"
    res = runner.invoke(
        router,
        [
            "train",
            "--data",
            str(converted / "train.jsonl"),
            "-o",
            str(art),
            "--target",
            "0.95",
            "--features",
            "structure",
            "--repeats",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "299 examples, candidates gpt-3.5-turbo-1106, claude-instant-v1," in res.output
    assert "out-of-fold calibration: policy" in res.output

    res = runner.invoke(
        router,
        [
            "calibrate",
            "--router",
            str(art),
            "--data",
            str(converted / "test.jsonl"),
            "--target",
            "0.9",
            "--write",
            str(converted / "cal.pkl"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "of the reference model's" in res.output and "saved" in res.output
    assert (converted / "cal.pkl").exists()

    png, js = converted / "curve.png", converted / "eval.json"
    res = runner.invoke(
        router,
        [
            "eval",
            "--router",
            str(art),
            "--data",
            str(converted / "test.jsonl"),
            "--plot",
            str(png),
            "--json",
            str(js),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "oracle" in res.output and "APGR" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads(js.read_text())
    assert (
        figures["n"] == 128
        and figures["oracle"]["quality"] > figures["singles"][figures["strong"]]["quality"]
    )


def test_bad_labeled_file_lists_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x", "candidates": {"m": {"quality": 1, "cost": 1}}}\n[]\n')
    res = CliRunner().invoke(router, ["train", "--data", str(bad), "-o", str(tmp_path / "r.pkl")])
    assert res.exit_code != 0 and f"{bad}:2: a line must be a JSON object" in res.output


def test_artifact_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    res = CliRunner().invoke(router, ["eval", "--router", str(junk), "--data", str(junk)])
    assert res.exit_code != 0


def test_calibrate_with_a_cost_cap_and_a_confidence(converted: Path) -> None:
    runner = CliRunner()
    art = converted / "router_cap.pkl"
    res = runner.invoke(
        router,
        ["train", "--data", str(converted / "train.jsonl"), "-o", str(art)]
        + ["--features", "structure", "--repeats", "1", "--target", "1.0"]
        + ["--reference", "gpt-4-1106-preview", "--max-cost", "0.3"],
    )
    assert res.exit_code == 0, res.output
    assert "within 30% of its cost" in res.output and "bootstrap resamples" in res.output
    res = runner.invoke(
        router,
        ["calibrate", "--router", str(art), "--data", str(converted / "test.jsonl")]
        + ["--target", "0.9", "--reference", "gpt-4-1106-preview", "--confidence", "0.8"],
    )
    assert res.exit_code == 0, res.output
    assert "asked for 80%" in res.output


def test_cascade_train_calibrate_eval(routing_data: Path, tmp_path: Path) -> None:
    """The same three commands on a cascade over answer signals (GSM8K: Mixtral, then GPT-4)."""
    from thrifty.routing.datasets import convert_routellm_gsm8k
    from thrifty.routing.labeled import write_labeled

    examples = convert_routellm_gsm8k(routing_data / "routellm_gsm8k_responses.csv").examples
    write_labeled(examples[:300], tmp_path / "train.jsonl")
    write_labeled(examples[300:450], tmp_path / "val.jsonl")
    runner = CliRunner()
    art = tmp_path / "cascade.pkl"
    stages = "mistralai/Mixtral-8x7B-Instruct-v0.1>gpt-4-1106-preview"
    res = runner.invoke(
        router,
        ["train", "--data", str(tmp_path / "train.jsonl"), "-o", str(art), "--cascade", stages]
        + ["--kind", "numeric", "--target", "0.9", "--max-cost", "0.6"],
    )
    assert res.exit_code == 0, res.output
    assert f"stages {stages.replace('>', ' > ')}" in res.output and "out-of-fold calibration of the accept threshold" in res.output
    res = runner.invoke(
        router,
        ["calibrate", "--router", str(art), "--data", str(tmp_path / "val.jsonl"), "--target", "0.85"]
        + ["--write", str(tmp_path / "cal.pkl")],
    )
    assert res.exit_code == 0, res.output
    assert "config: route: {cascade: {signals:" in res.output and (tmp_path / "cal.pkl").exists()
    res = runner.invoke(
        router,
        ["eval", "--router", str(tmp_path / "cal.pkl"), "--data", str(tmp_path / "val.jsonl")]
        + ["--plot", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.json")],
    )
    assert res.exit_code == 0, res.output
    figures = json.loads((tmp_path / "c.json").read_text())
    assert figures["calibrated_policy"] == "cascade accept" and "cascade" in figures["apgr"]
    assert figures["calibrated"]["quality"] >= 0.85 * figures["singles"]["gpt-4-1106-preview"]["quality"]
    assert (tmp_path / "c.png").stat().st_size > 0
