"""Signals of a pool of answers, and the route's format verifiers."""

from __future__ import annotations

import pytest

from thrifty.routing.signals import (
    Answer,
    answer_kind,
    check_format,
    feature_names,
    pool_features,
    pool_signals,
)

PROMPT = "Tom has 3 boxes of 12 pens and gives away 5. How many pens are left?"


async def test_numeric_answers_agree_on_their_final_number() -> None:
    answers = [
        Answer("a", "3 * 12 = <<3*12=36>>36 pens, 36 - 5 = <<36-5=31>>31.\n#### 31"),
        Answer("b", "He keeps 31 pens. The answer is 31"),
        Answer("c", "3 * 12 = <<3*12=35>>35, so #### 30"),
        Answer("d", None),
    ]
    sig = await pool_signals(answers, "auto", PROMPT)
    assert sig.kind == "numeric"  # every answer there is ends on a number (a failed call is no answer)
    assert sig.agreement[0][1] == 1.0 and sig.agreement[0][2] == 0.0 and sig.agreement[0][3] is None
    pool = ["a", "b", "c", "d"]
    x = pool_features(answers, sig, pool, prompt=PROMPT)
    names = feature_names(pool, "numeric")
    assert x.shape == (4, len(names))
    row = dict(zip(names, x[0], strict=True))
    assert row["is:a"] == 1.0 and row["agree:b"] == 1.0 and row["unknown:d"] == 1.0
    assert row["uses_given"] == pytest.approx(1.0)  # 3, 12 and 5 all appear in the answer
    assert row["final_is_last_step"] == 1.0 and row["wrong_step"] == 0.0
    bad = dict(zip(names, x[2], strict=True))
    assert bad["wrong_step"] == 1.0 and bad["final_is_last_step"] == 0.0


async def test_samples_of_one_model_are_averaged_in_its_slot() -> None:
    answers = [Answer("a", "#### 4"), Answer("b", "#### 4"), Answer("b", "#### 5")]
    sig = await pool_signals(answers, "numeric")
    row = dict(zip(feature_names(["a", "b"], "numeric"), pool_features(answers, sig, ["a", "b"])[0], strict=True))
    assert row["agree:b"] == 0.5 and row["agree_known"] == 1.0


def test_answer_kind() -> None:
    assert answer_kind(["```python\ndef f():\n    return 1\n```", "def g(): pass"]) == "code"
    assert answer_kind(["It is 4.", "#### 5"]) == "numeric"
    assert answer_kind(["yes", "no"]) == "text"


def test_format_verifiers() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert check_format('{"name": "x"}', json_schema=schema) is None
    assert check_format('Sure:\n```json\n{"name": "x"}\n```', json_schema=schema) is None
    assert check_format('{"name": 3}', json_schema=schema) == "JSON schema: 3 is not of type 'string'"
    assert check_format("not json", json_schema=schema) == "not JSON"
    assert check_format("ID: AB-1234", regex=r"[A-Z]{2}-\d{4}") is None
    assert check_format("ID: 1234", regex=r"[A-Z]{2}-\d{4}") == "does not match the route's regex"
    assert check_format("about nine", numeric=True) == "no final number"


def _row(prompt: str, text: str) -> dict[str, float]:
    from thrifty.routing.signals import PoolSignals, _numeric_verifiers

    sig = PoolSignals("numeric", [[None]], [_numeric_verifiers(prompt, text)])
    return dict(zip(feature_names(["a"], "numeric"), pool_features([Answer("a", text)], sig, ["a"], prompt=prompt)[0], strict=True))


def test_numeric_answers_are_read_for_format_grounding_and_second_thoughts() -> None:
    good = _row(PROMPT, "3 * 12 = <<3*12=36>>36 pens, 36 - 5 = <<36-5=31>>31.\n#### 31")
    assert good["marked_integer"] == 1.0 and good["unmarked"] == 0.0 and good["final_is_result"] == 1.0
    assert good["ungrounded_share"] == 0.0 and good["hedges"] == 0.0
    # `#### 31.00`: a whole number in another format; a cut-off answer has no marker at all
    assert _row(PROMPT, "36 - 5 = <<36-5=31>>31\n#### 31.00")["marked_integer"] == 0.0
    assert _row(PROMPT, "3 * 12 = <<3*12=36>>36 pens, and then 36 - 5 =")["unmarked"] == 1.0
    # 17 comes from nowhere: the question did not give it, no step computed it, no unit needs it
    loose = _row(PROMPT, "3 * 17 = <<3*17=51>>51, 51 - 5 = <<51-5=46>>46\n#### 46")
    assert loose["ungrounded_share"] == pytest.approx(0.25)  # 17 of 3, 17, 51, 5
    assert _row(PROMPT, "36 - 5 = 31\n#### 40")["final_is_result"] == 0.0  # the final number no step computed
    hedged = _row(PROMPT, "However, assuming he rounds up, it is 31.\n#### 31")
    assert hedged["hedges"] > good["hedges"]


async def test_multiple_choice_answers_agree_on_the_option_they_pick() -> None:
    from thrifty.routing.signals import final_choice

    picks = ("B", "(C) Paris", "The answer is D.", "Option 2", "E is correct", "A robe takes 2", "#### 4")
    assert [final_choice(t) for t in picks] == ["B", "C", "D", "2", "E", None, None]
    answers = [Answer("a", "B"), Answer("b", "The answer is B, since..."), Answer("c", "(A)"), Answer("d", "no idea")]
    sig = await pool_signals(answers, "auto", "Which? A. x B. y")
    assert sig.kind == "choice"
    assert sig.agreement[0][1] == 1.0 and sig.agreement[0][2] == 0.0 and sig.agreement[0][3] is None
    row = dict(zip(feature_names(list("abcd"), "choice"), pool_features(answers, sig, list("abcd"))[0], strict=True))
    assert row["has_choice"] == 1.0 and row["bare_choice"] == 1.0 and row["agree:b"] == 1.0
