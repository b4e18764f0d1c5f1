"""Signals from the answers themselves, and a scorer that learns how much each one is worth.

A router that reads only the prompt cannot know which cheap answer is wrong. These signals read
the answers a cascade stage has gathered (one or several cheap models, or several samples of
one) and describe each answer:

- agreement with each other answer of the pool: same final number (maths), same option picked
  (multiple choice), same return values on the answers' own example inputs (code, run in the
  sandbox), or word overlap (prose);
- format verifiers: a final number, an integer one, marked `#### N` as asked, worked
  calculations that recompute, step operands that come from the question or earlier steps, a
  final number that some step computed, second thoughts ("however", "assuming", "round"), the
  share of the question's numbers the answer works with; for code, whether the entry function
  runs on the inputs; for multiple choice, whether an option is picked;
- the provider's mean token logprob, where it returned one;
- which model wrote the answer (a prior).

`SignalScorer` is a logistic regression (or gradient-boosted trees, whichever cross-validates
better) over these features, one per cascade stage, fitted on
labeled data with recorded answers; it predicts P(good) for every answer of the pool, and the
stage keeps the best one or escalates. Hard verifiers the route supplies (tests, a regex, a
JSON schema) are not weighed: an answer that fails them is rejected outright.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty.routing.answers import arithmetic_errors, final_number, parse_code
from thrifty.routing.execution import Behaviour, agreement_matrix, behaviours

__all__ = [
    "KINDS",
    "VERIFIER_FEATURES",
    "Answer",
    "PoolSignals",
    "SignalScorer",
    "answer_kind",
    "check_format",
    "final_choice",
    "feature_names",
    "pool_features",
    "pool_signals",
]

KINDS: tuple[str, ...] = ("auto", "code", "choice", "numeric", "text")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class Answer:
    """One answer of a pool: the model (or tier) that wrote it, its text, its mean logprob."""

    model: str
    text: str | None  # None: the call failed or was not made
    mean_logprob: float | None = None


_CHOICE = (
    re.compile(r"^\W{0,3}([A-E])(?:\W{0,3}$|[.):]\s|\s+is\b)"),  # "B", "(B)", "B. Paris", "B) ...", "B is"
    re.compile(r"\b(?:[Aa]nswer|[Oo]ption|[Cc]hoice)(?:\s+is)?\s*:?\s*\(?([A-E])\)?(?![\w'])"),
    re.compile(r"\b[Oo]ption\s*:?\s*\(?([1-5])\)?(?!\w)"),
)


def final_choice(text: str | None) -> str | None:
    """The option a multiple-choice answer picks ("A".."E", or "1".."5" after "option"), or None."""
    if not text:
        return None
    head = text.strip()
    for pattern in _CHOICE:
        hits = pattern.findall(head)
        if hits:
            return str(hits[-1]).upper()
    return None


def answer_kind(texts: Sequence[str | None]) -> str:
    """"code" when most answers define a function, "choice" when most pick an option letter,
    "numeric" when they all end on a number, else "text"."""
    present = [t for t in texts if t]
    if not present:
        return "text"
    if sum(parse_code(t) is not None for t in present) * 2 > len(present):
        return "code"
    if sum(final_choice(t) is not None for t in present) * 2 > len(present):
        return "choice"
    if all(final_number(t) is not None for t in present):
        return "numeric"
    return "text"


def _numeric_agreement(texts: Sequence[str | None]) -> list[list[float | None]]:
    nums = [final_number(t) if t else None for t in texts]
    n = len(texts)
    return [
        [
            None if i == j or nums[i] is None or nums[j] is None else float(abs(nums[i] - nums[j]) < 1e-6)  # type: ignore[operator]
            for j in range(n)
        ]
        for i in range(n)
    ]


def _choice_agreement(texts: Sequence[str | None]) -> list[list[float | None]]:
    picks = [final_choice(t) for t in texts]
    n = len(texts)
    return [
        [None if i == j or picks[i] is None or picks[j] is None else float(picks[i] == picks[j]) for j in range(n)]
        for i in range(n)
    ]


def _text_agreement(texts: Sequence[str | None]) -> list[list[float | None]]:
    words = [set(_WORD.findall(t.lower())) if t else None for t in texts]
    n = len(texts)
    out: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            a, b = words[i], words[j]
            if i != j and a and b:
                out[i][j] = len(a & b) / len(a | b)
    return out


@dataclass
class PoolSignals:
    """The raw signals of one pool: the kind, the agreement matrix and per-answer verifier values."""

    kind: str
    agreement: list[list[float | None]]
    verifiers: list[list[float]]  # per answer, VERIFIER_FEATURES[kind]


VERIFIER_FEATURES: dict[str, tuple[str, ...]] = {
    "numeric": (
        "has_number",
        "integer",
        "non_negative",
        "checked_steps",
        "wrong_step",
        "wrong_share",
        "uses_given",  # share of the question's numbers the answer works with
        "given_count",
        "final_is_last_step",  # the final number is the last worked result
        "steps",
        "final_is_given",  # the final number is one the question gave: often a non-answer
        "marked_integer",  # the answer ends on `#### N` with N a plain integer (the format asked for)
        "unmarked",  # no `####`/boxed/"the answer is" marker: often cut off or unfinished
        "final_is_result",  # the final number is the result of one of the worked steps
        "ungrounded_share",  # share of step operands neither given, computed before nor a common constant
        "hedges",  # second thoughts: "however", "actually", "assuming", "round", ...
    ),
    "code": ("has_function", "runs"),
    "choice": ("has_choice", "bare_choice"),  # an option picked; the answer is little more than it
    "text": (),
}

_GIVEN = re.compile(r"\d[\d,]*(?:\.\d+)?")
_MARKED = re.compile(r"####\s*(.*)")
_MARKER = re.compile(r"####|\\boxed\{|answer(?: is|:)", re.I)
_ANNOTATED = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
_HEDGE = re.compile(
    r"\b(however|actually|assum\w*|approximately|round\w*|cannot|can't|not possible|impossible|unclear|"
    r"not enough|mistake|instead|nearest|whole number)\b",
    re.I,
)
#: numbers a worked step may use without the question giving them (units, percentages, calendars)
_CONSTANTS = frozenset({0.5, 0.25, 0.1, 0.01, *range(0, 11), 12, 24, 30, 31, 52, 60, 100, 365, 1000})
_STEP = re.compile(r"<<[^=<>]+=([^<>]+)>>|=\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")


def _numbers(text: str) -> list[float]:
    out = []
    for x in _GIVEN.findall(text):
        try:
            out.append(float(x.replace(",", "")))
        except ValueError:
            continue
    return out


def _grounding(given: set[float], text: str) -> tuple[float, list[float]]:
    """(share of the operands of the annotated steps that come from nowhere, the steps' results):
    an operand is grounded when the question gave it, an earlier step computed it, or it is a
    common constant (a percentage of a given number counts as given)."""
    known = set(given)
    results: list[float] = []
    loose = total = 0
    for expr, value in _ANNOTATED.findall(text):
        for x in _numbers(expr):
            total += 1
            if x not in known and x not in _CONSTANTS and x * 100 not in given:
                loose += 1
        got = _numbers(value)
        if got:
            known.add(got[0])
            results.append(got[0])
    if not results:  # prose steps: `a * b = c`
        results = [v for s in _STEP.findall(text) for v in _numbers(s[0] or s[1])[:1]]
    return (loose / total if total else 0.0), results


def _numeric_verifiers(prompt: str, text: str | None) -> list[float]:
    n = len(VERIFIER_FEATURES["numeric"])
    if not text:
        return [0.0] * n
    num = final_number(text)
    checked, wrong = arithmetic_errors(text)
    given = set(_numbers(prompt))
    used = set(_numbers(text))
    steps = [a or b for a, b in _STEP.findall(text)]
    last = _numbers(steps[-1]) if steps else []
    marked = _MARKED.findall(text)
    loose, results = _grounding(given, text)
    return [
        float(num is not None),
        float(num is not None and float(num).is_integer()),
        float(num is not None and num >= 0),
        float(checked > 0),
        float(wrong > 0),
        wrong / checked if checked else 0.0,
        len(given & used) / len(given) if given else 1.0,
        math.log1p(len(given)),
        float(num is not None and bool(last) and abs(last[0] - num) < 1e-6),
        math.log1p(len(steps)),
        float(num is not None and num in given),
        float(bool(marked) and re.fullmatch(r"-?\d+", marked[-1].strip()) is not None),
        float(_MARKER.search(text) is None),
        float(num is not None and any(abs(r - num) < 1e-6 for r in results)),
        loose,
        math.log1p(len(_HEDGE.findall(text))),
    ]


async def pool_signals(answers: Sequence[Answer], kind: str = "auto", prompt: str = "") -> PoolSignals:
    """Agreement and verifier values of a pool of answers (code runs in the sandbox)."""
    texts = [a.text for a in answers]
    k = answer_kind(texts) if kind == "auto" else kind
    if k == "code":
        bs = await behaviours([t or "" for t in texts])
        return PoolSignals(k, agreement_matrix(bs), [_code_verifiers(b) for b in bs])
    if k == "numeric":
        return PoolSignals(k, _numeric_agreement(texts), [_numeric_verifiers(prompt, t) for t in texts])
    if k == "choice":
        return PoolSignals(k, _choice_agreement(texts), [_choice_verifiers(t) for t in texts])
    return PoolSignals(k, _text_agreement(texts), [[] for _ in texts])


def _choice_verifiers(text: str | None) -> list[float]:
    pick = final_choice(text)
    return [float(pick is not None), float(pick is not None and len((text or "").strip()) <= 4)]


def _code_verifiers(b: Behaviour) -> list[float]:
    return [float(b.parsed is not None and b.parsed.entry is not None), b.runs]


def feature_names(pool: Sequence[str], kind: str, prior: bool = False) -> list[str]:
    names = [f"is:{m}" for m in pool]
    names += [f"agree:{m}" for m in pool] + [f"unknown:{m}" for m in pool]
    names += ["agree_mean", "agree_known", "agree_weighted"]
    names += list(VERIFIER_FEATURES[kind])
    names += ["mean_logprob", "no_logprob", "log_chars", "log_lines", "log_prompt_chars"]
    if prior:
        names += ["prompt_prior", "prompt_prior_last"]
    return names


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def pool_features(
    answers: Sequence[Answer],
    sig: PoolSignals,
    pool: Sequence[str],
    weights: Sequence[float] | None = None,
    *,
    prompt: str = "",
    prior: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """(len(answers), n_features): each answer's features; `pool` names the feature columns
    (answers[i].model must be in it). `weights` (per pool model, e.g. its accuracy on the training
    data) weigh the agreement of each other answer in `agree_weighted`. `prior`, per answer, is a
    prompt-only router's P(good) for its model and for the cascade's last model: what the prompt
    alone says, for the scorer to weigh against what the answers say."""
    k = len(pool)
    w = list(weights) if weights is not None else [1.0] * k
    slot = {m: i for i, m in enumerate(pool)}
    rows = []
    for a, ans in enumerate(answers):
        one = [0.0] * k
        one[slot[ans.model]] = 1.0
        agree, unknown, seen = [0.0] * k, [1.0] * k, [0] * k
        known: list[float] = []
        wsum = wtot = 0.0
        for b, other in enumerate(answers):
            v = sig.agreement[a][b]
            if b == a or v is None:
                continue
            j = slot[other.model]
            seen[j] += 1  # several samples of one model: their mean
            agree[j] += (v - agree[j]) / seen[j]
            unknown[j] = 0.0
            known.append(v)
            wsum += w[j] * v
            wtot += w[j]
        lp = ans.mean_logprob
        rows.append(
            one
            + agree
            + unknown
            + [
                float(np.mean(known)) if known else 0.0,
                len(known) / max(len(answers) - 1, 1),
                wsum / wtot if wtot else 0.0,
            ]
            + list(sig.verifiers[a])
            + [lp if lp is not None and math.isfinite(lp) else 0.0, float(lp is None)]
            + [
                math.log1p(len(ans.text or "")),
                math.log1p((ans.text or "").count("\n")),
                math.log1p(len(prompt)),
            ]
            + ([_logit(prior[a][0]), _logit(prior[a][1])] if prior is not None else [])
        )
    return np.array(rows, dtype=np.float64)


@dataclass
class SignalScorer:
    """P(good) of each answer of one stage's pool, from its signal features."""

    pool: list[str]
    kind: str
    model: Any  # a fitted scikit-learn pipeline, or a float (a constant prior)
    weights: list[float] = field(default_factory=list)
    c: float = 1.0
    #: whether the features end with the prompt-only prior (see `pool_features`)
    uses_prior: bool = False
    #: "logistic" or "boosted" (gradient-boosted trees), chosen by out-of-fold log loss
    family: str = "logistic"

    def predict(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.model, float):
            return np.full(len(x), self.model)
        return np.asarray(self.model.predict_proba(x)[:, 1])

    def best(
        self,
        answers: Sequence[Answer],
        sig: PoolSignals,
        prompt: str = "",
        prior: Sequence[tuple[float, float]] | None = None,
    ) -> tuple[int, float, np.ndarray]:
        """(index of the best answer, its P(good), every answer's P(good)); failed calls get 0."""
        x = pool_features(answers, sig, self.pool, self.weights, prompt=prompt, prior=prior if self.uses_prior else None)
        p = self.predict(x)
        p = np.where([a.text is None for a in answers], 0.0, p)
        i = int(np.argmax(p))
        return i, float(p[i]), p


# -- route verifiers -------------------------------------------------------------------------


def check_format(text: str, *, regex: str | None = None, json_schema: dict[str, Any] | None = None,
                 numeric: bool = False) -> str | None:
    """Why an answer fails the route's format verifiers, or None when it passes them all."""
    if numeric and final_number(text) is None:
        return "no final number"
    if regex is not None and re.search(regex, text, re.S) is None:
        return "does not match the route's regex"
    if json_schema is not None:
        import jsonschema

        body = text.strip()
        fenced = re.search(r"```(?:json)?\s*\n(.*?)```", body, re.S)
        if fenced:
            body = fenced.group(1)
        try:
            jsonschema.validate(json.loads(body), json_schema)
        except ValueError:
            return "not JSON"
        except jsonschema.ValidationError as exc:
            return f"JSON schema: {exc.message}"
    return None
