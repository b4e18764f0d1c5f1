from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.routing.labeled import (
    Candidate,
    Example,
    LabeledDataError,
    common_candidates,
    data_hash,
    load_labeled,
    split_fixed,
    write_labeled,
)


def line(**kw: object) -> str:
    base: dict[str, object] = {
        "id": "a",
        "prompt": "What is 2+2?",
        "candidates": {"big": {"quality": 1, "cost": 0.002}, "small": {"quality": 0.5, "cost": 0.0001}},
    }
    base.update(kw)
    return json.dumps(base)


def test_round_trip_keeps_costs_exact(tmp_path: Path) -> None:
    ex = Example(
        "q1",
        {
            "m": Candidate(1.0, Decimal("0.0005479999999999999"), "4"),
            "n": Candidate(0.0, Decimal("5.38e-05")),
        },
        prompt="2+2?",
        meta={"source": "t"},
    )
    path = tmp_path / "d.jsonl"
    assert write_labeled([ex], path) == 1
    back = load_labeled(path)[0]
    assert back.candidates["m"].cost == Decimal("0.0005479999999999999")
    assert back.candidates["n"].cost == Decimal("0.0000538")
    assert back.candidates["m"].response == "4" and back.meta == {"source": "t"}
    assert data_hash([back]) == data_hash([ex])


def test_messages_stand_in_for_prompt(tmp_path: Path) -> None:
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    (tmp_path / "d.jsonl").write_text(line(prompt=None, messages=msgs).replace('"prompt": null, ', "") + "\n")
    (ex,) = load_labeled(tmp_path / "d.jsonl")
    assert ex.text == "hi"


def test_bad_lines_are_reported_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                line(id="ok1"),
                "{not json",
                line(id="q", candidates={"m": {"quality": 1.5, "cost": 1}}),
                "",
                line(id="c", candidates={"m": {"quality": 1, "cost": -1}}),
                line(id="ok1"),
                line(id="np", prompt=None),
            ]
        )
        + "\n"
    )
    with pytest.raises(LabeledDataError) as err:
        load_labeled(path)
    numbers = [n for n, _ in err.value.problems]
    assert numbers == [2, 3, 5, 6, 7]
    text = str(err.value)
    assert f"{path}:3: candidate 'm': quality must be a number in 0..1" in text
    assert "duplicate id 'ok1' (first on line 1)" in text
    # Lenient reading keeps the good line.
    assert [e.id for e in load_labeled(path, strict=False)] == ["ok1"]


def test_common_candidates_and_fixed_split() -> None:
    exs = [
        Example(
            str(i), {"a": Candidate(1, Decimal(1)), "b": Candidate(0, Decimal(0))}, prompt=f"question {i}"
        )
        for i in range(200)
    ]
    exs[3].candidates.pop("b")
    assert common_candidates(exs) == ["a"]
    train, test = split_fixed(exs)
    assert 130 < len(train) < 190 and len(train) + len(test) == 200
    # The split depends on the question, not on the order of the file.
    train2, _ = split_fixed(list(reversed(exs)))
    assert {e.id for e in train2} == {e.id for e in train}
