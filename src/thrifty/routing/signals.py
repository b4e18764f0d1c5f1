"""Signals from the answers themselves, and a scorer that learns how much each one is worth.

A router that reads only the prompt cannot know which cheap answer is wrong. These signals read
the answers a cascade stage has gathered (one or several cheap models, or several samples of
one) and describe each answer:

- agreement with each other answer of the pool: same final number (maths), same return values
  on the answers' own example inputs (code, run in the sandbox), or word overlap (prose);
- format verifiers: a final number, an integer one, worked calculations that recompute;
  for code, whether the entry function runs on the inputs;
- the provider's mean token logprob, where it returned one;
- which model wrote the answer (a prior).

`SignalScorer` is a logistic regression over these features, one per cascade stage, fitted on
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
from typing import Any, Literal

import numpy as np

from thrifty.routing.answers import arithmetic_errors, final_number, parse_code
from thrifty.routing.execution import Behaviour, agreement_matrix, behaviours

__all__ = [
    "KINDS",
    "Answer",
    "SignalScorer",
    "answer_kind",
    "check_format",
    "feature_names",
    "pool_features",
    "pool_signals",
]

Kind = Literal["auto", "code", "numeric", "text"]
KINDS: tuple[str, ...] = ("auto", "code", "numeric", "text")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class Answer:
    """One answer of a pool: the model (or tier) that wrote it, its text, its mean logprob."""

    model: str
    text: str | None  # None: the call failed or was not made
    mean_logprob: float | None = None


def answer_kind(texts: Sequence[str | None]) -> str:
    """"code" when most answers define a function, "numeric" when they all end on a number,
    else "text"."""
    present = [t for t in texts if t]
    if not present:
        return "text"
    if sum(parse_code(t) is not None for t in present) * 2 > len(present):
        return "code"
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
    "numeric": ("has_number", "integer", "non_negative", "checked_steps", "wrong_step", "wrong_share"),
    "code": ("has_function", "runs"),
    "text": (),
}


def _numeric_verifiers(text: str | None) -> list[float]:
    if not text:
        return [0.0] * 6
    num = final_number(text)
    checked, wrong = arithmetic_errors(text)
    return [
        float(num is not None),
        float(num is not None and float(num).is_integer()),
        float(num is not None and num >= 0),
        float(checked > 0),
        float(wrong > 0),
        wrong / checked if checked else 0.0,
    ]


async def pool_signals(answers: Sequence[Answer], kind: str = "auto") -> PoolSignals:
    """Agreement and verifier values of a pool of answers (code runs in the sandbox)."""
    texts = [a.text for a in answers]
    k = answer_kind(texts) if kind == "auto" else kind
    if k == "code":
        bs = await behaviours([t or "" for t in texts])
        return PoolSignals(k, agreement_matrix(bs), [_code_verifiers(b) for b in bs])
    if k == "numeric":
        return PoolSignals(k, _numeric_agreement(texts), [_numeric_verifiers(t) for t in texts])
    return PoolSignals(k, _text_agreement(texts), [[] for _ in texts])


def _code_verifiers(b: Behaviour) -> list[float]:
    return [float(b.parsed is not None and b.parsed.entry is not None), b.runs]


def feature_names(pool: Sequence[str], kind: str) -> list[str]:
    names = [f"is:{m}" for m in pool]
    names += [f"agree:{m}" for m in pool] + [f"unknown:{m}" for m in pool]
    names += ["agree_mean", "agree_known", "agree_weighted"]
    names += list(VERIFIER_FEATURES[kind])
    names += ["mean_logprob", "no_logprob", "log_chars"]
    return names


def pool_features(
    answers: Sequence[Answer], sig: PoolSignals, pool: Sequence[str], weights: Sequence[float] | None = None
) -> np.ndarray:
    """(len(answers), n_features): each answer's features; `pool` names the feature columns
    (answers[i].model must be in it). `weights` (per pool model, e.g. its accuracy on the training
    data) weigh the agreement of each other answer in `agree_weighted`."""
    k = len(pool)
    w = list(weights) if weights is not None else [1.0] * k
    slot = {m: i for i, m in enumerate(pool)}
    rows = []
    for a, ans in enumerate(answers):
        one = [0.0] * k
        one[slot[ans.model]] = 1.0
        agree, unknown = [0.0] * k, [1.0] * k
        known: list[float] = []
        wsum = wtot = 0.0
        for b, other in enumerate(answers):
            v = sig.agreement[a][b]
            if b == a or v is None:
                continue
            agree[slot[other.model]] = v
            unknown[slot[other.model]] = 0.0
            known.append(v)
            wsum += w[slot[other.model]] * v
            wtot += w[slot[other.model]]
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
            + [math.log1p(len(ans.text or ""))]
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

    def predict(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.model, float):
            return np.full(len(x), self.model)
        return np.asarray(self.model.predict_proba(x)[:, 1])

    def best(self, answers: Sequence[Answer], sig: PoolSignals) -> tuple[int, float, np.ndarray]:
        """(index of the best answer, its P(good), every answer's P(good)); failed calls get 0."""
        x = pool_features(answers, sig, self.pool, self.weights)
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
