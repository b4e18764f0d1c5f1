"""The hand adjudication of QQP pairs: the file the benchmark reads, and how verdicts apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from thrifty.cache.pairdata import (
    ADJUDICATION_FILE,
    Pair,
    adjudicated_labels,
    load_adjudication,
    load_pairs,
    pair_key,
)


def test_every_recorded_verdict_names_its_pair_and_is_never_from_training() -> None:
    verdicts = load_adjudication()
    assert len(verdicts) >= 100
    for key, v in verdicts.items():
        assert key == pair_key(v.text_a, v.text_b)  # the key is the pair's texts, so a typo cannot hide
        assert v.split in ("val", "test") and v.qqp_label == 0 and v.reason
    kinds = {v.verdict for v in verdicts.values()}
    assert kinds == {"same", "different"}  # genuinely different look-alikes are recorded too


def test_verdicts_apply_only_to_served_pairs_labelled_different(tmp_path: Path) -> None:
    pairs = [
        Pair("How do I learn guitar?", "What is the best way to learn guitar?", 0, "test"),  # served, judged same
        Pair("How do I convert ethane to ethene?", "How do I convert ethene to ethane?", 0, "test"),  # served, judged different
        Pair("Is tea healthy?", "Is green tea healthy?", 0, "test"),  # served, not judged yet
        Pair("Why is the sky blue?", "Why does the sky look blue?", 1, "test"),  # served, a labelled duplicate
        Pair("Who won?", "Who lost?", 0, "test"),  # not served: a verdict would not matter
    ]
    path = tmp_path / "verdicts.jsonl"
    rows = [(pairs[0], "same"), (pairs[1], "different"), (pairs[4], "same")]
    path.write_text("".join(
        json.dumps({"key": pair_key(p.text_a, p.text_b), "split": p.split, "text_a": p.text_a, "text_b": p.text_b,
                    "qqp_label": p.label, "verdict": v, "reason": "read by hand"}) + "\n"
        for p, v in rows
    ))  # fmt: skip
    served = np.array([True, True, True, True, False])
    labels, judged, missing = adjudicated_labels(pairs, served, load_adjudication(path))
    assert labels.tolist() == [1, 0, 0, 1, 0]
    assert judged == 2 and missing == [2]


def test_a_verdict_must_be_same_or_different(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    path.write_text(json.dumps({"key": "k", "split": "val", "text_a": "a", "text_b": "b", "qqp_label": 0,
                                "verdict": "maybe", "reason": "?"}) + "\n")
    with pytest.raises(ValueError, match="neither"):
        load_adjudication(path)


def test_the_file_is_in_the_repository() -> None:
    assert ADJUDICATION_FILE.exists() and ADJUDICATION_FILE.parent.name == "data"


def test_a_template_line_not_yet_judged_is_skipped(tmp_path: Path) -> None:
    """The benchmark's --write-unjudged lines have an empty verdict until a reader fills it in."""
    path = tmp_path / "to-judge.jsonl"
    row = {"key": pair_key("a", "b"), "split": "test", "text_a": "a", "text_b": "b", "qqp_label": 0, "reason": ""}
    path.write_text(json.dumps({**row, "verdict": ""}) + "\n" + json.dumps({**row, "key": "k2", "verdict": "same"}) + "\n")
    assert list(load_adjudication(path)) == ["k2"]


def test_a_held_out_file_is_all_test_pairs_and_says_which_line_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "held_out.jsonl"
    path.write_text(
        json.dumps({"text_a": "How do I learn guitar?", "text_b": "Best way to learn guitar?", "label": 1}) + "\n\n"
        + json.dumps({"text_a": "Who won?", "text_b": "Who lost?", "label": 0}) + "\n"
    )
    pairs = load_pairs(path)
    assert [(p.label, p.split) for p in pairs] == [(1, "test"), (0, "test")]
    path.write_text(json.dumps({"text_a": "x", "label": 0}) + "\n")
    with pytest.raises(ValueError, match=r"held_out.jsonl:1: .*'text_b' is missing"):
        load_pairs(path)
