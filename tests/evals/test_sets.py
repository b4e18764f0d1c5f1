"""Reading eval sets: good lines become items, bad lines are reported by number and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty.evals.sets import SetError, load_set


def test_good_and_malformed_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "prompt": "2+2?", "expected": "4", "grader": {"type": "numeric"}}),
        '{"id": "b", "prompt": "oops"',  # line 2: broken JSON
        json.dumps({"id": "c", "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    "grader": {"type": "regex", "pattern": "hel+o"}}),
        json.dumps({"id": "d", "prompt": "x", "grader": {"type": "telepathy"}}),  # line 4
        "",
        json.dumps({"id": "a", "prompt": "again", "expected": "1"}),  # line 6: duplicate id
        json.dumps({"id": "f", "prompt": "pick", "expected": "E", "grader": "choice"}),  # line 7: E not in ABCD
        json.dumps({"id": "g", "expected": "4"}),  # line 8: no request
        json.dumps({"id": "h", "prompt": "q", "expected": "Paris"}),  # defaults to exact
        json.dumps({"id": "i", "prompt": "q", "grader": {"type": "regex", "pattern": "("}}),  # line 10
        json.dumps({"id": "j", "prompt": "code", "grader": {"type": "code"}}),  # line 11: no tests
        "[1, 2]",  # line 12
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    s = load_set(path)
    assert [i.id for i in s.items] == ["a", "c", "h"]
    assert [p.line for p in s.problems] == [2, 4, 6, 7, 8, 10, 11, 12]
    assert "not valid JSON" in str(s.problems[0]) and str(s.problems[0]).startswith("line 2:")
    assert "duplicate id 'a' (first on line 1)" in s.problems[2].message
    assert s.items[0].request == {"messages": [{"role": "user", "content": "2+2?"}]}
    assert s.items[2].grader == {"type": "exact"}
    assert s.items[1].prompt_text == "hi"


def test_item_key_changes_with_what_decides_the_result(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps({"id": "a", "prompt": "q", "expected": "1"}) + "\n"
        + json.dumps({"id": "b", "prompt": "q", "expected": "2"}) + "\n",
        encoding="utf-8",
    )
    a, b = load_set(path).items
    assert a.key() != b.key() and a.key() == load_set(path).items[0].key()


def test_missing_file() -> None:
    with pytest.raises(SetError, match="not found"):
        load_set("/nonexistent/evals.jsonl")


def test_the_shipped_example_set_is_clean() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "evals" / "smoke.jsonl"
    s = load_set(example)
    assert not s.problems
    assert {i.grader["type"] for i in s.items} == {
        "normalized", "numeric", "choice", "regex", "json_schema", "code", "embedding", "judge",
    }  # fmt: skip


def test_the_local_models_smoke_set_is_clean() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "evals" / "local-smoke.jsonl"
    s = load_set(example)
    assert not s.problems and len(s.items) == 30
    assert {i.id.split("-")[0] for i in s.items} == {"fact", "math", "do", "fmt"}
    assert all(i.request.get("temperature") == 0 for i in s.items)  # a figure that reruns the same
