"""Graders: turn a model's answer into pass, fail or ungraded, with a score in [0, 1].

A grader spec is a small mapping in an eval line (`{"type": "numeric", "abs_tol": 0.01}`).
Types: `exact`, `normalized`, `regex`, `choice`, `numeric`, `json_schema`, `embedding`,
`code` and `judge`. A grader that cannot decide (the judge failed, timed out or answered
something unreadable; the embedder is missing) says UNGRADED: never passed, and left out
of quality averages rather than counted as a pass or a fail.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import string
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from thrifty.errors import DataError
from thrifty.evals import sandbox

Status = Literal["pass", "fail", "ungraded"]

#: Calls a configured model with OpenAI chat `messages` and returns its text answer.
JudgeCaller = Callable[[str, list[dict[str, Any]], float], Awaitable[str]]
#: Embeds texts into unit vectors (thrifty.embed's shared embedder by default).
EmbedFn = Callable[[Sequence[str]], np.ndarray]


class GraderSpecError(DataError):
    """A grader spec that cannot work (unknown type, missing or bad settings)."""


@dataclass(frozen=True)
class Grade:
    status: Status
    #: quality in [0, 1]; None when ungraded
    score: float | None
    detail: str = ""
    #: what the grader measured (the number extracted, the similarity, the judge's score)
    value: Any = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @classmethod
    def of(cls, ok: bool, detail: str = "", value: Any = None) -> Grade:
        return cls("pass" if ok else "fail", 1.0 if ok else 0.0, detail, value)

    @classmethod
    def ungraded(cls, detail: str) -> Grade:
        return cls("ungraded", None, detail)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "score": self.score, "detail": self.detail, "value": _jsonable(self.value)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grade:
        return cls(data["status"], data.get("score"), data.get("detail", ""), data.get("value"))


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


@dataclass
class Services:
    """What some graders need from outside: a model to judge with and an embedder."""

    judge: JudgeCaller | None = None
    #: the judge model when a spec names none
    judge_model: str | None = None
    embed: EmbedFn | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def embedder(self) -> EmbedFn:
        if self.embed is None:
            from thrifty.embed import shared_embedder

            self.embed = shared_embedder().embed
        return self.embed


# -- text helpers ------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "‘’“”")


def normalize_text(text: str) -> str:
    """Lowercase, NFKC, no punctuation or articles, single spaces (SQuAD-style)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _expected_list(expected: Any) -> list[str]:
    if isinstance(expected, list):
        return [str(e) for e in expected]
    return [str(expected)]


# -- numbers -----------------------------------------------------------------------------

_CALC = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations: <<9*2=18>>
_NUMBER = re.compile(
    r"(?<![\w.])(-|−)?\s?[$€£]?\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:\s?/\s?(\d+)(?![\d.]))?"
)
_FINAL_MARKERS = (
    re.compile(r"####\s*([^\n]*)"),
    re.compile(r"\\boxed\{([^{}]*)\}"),
    re.compile(r"(?i)(?:final answer|the answer is|answer:)\s*(?:is\s*)?[:=]?\s*([^\n]*)"),
)


def parse_number(text: str) -> float | None:
    """The first number in `text`: `1,234.5`, `$18`, `-3`, `.5`, `3/4`, `12%` (as 12)."""
    m = _NUMBER.search(text)
    if m is None:
        return None
    sign, digits, denominator = m.group(1), m.group(2), m.group(3)
    value = float(digits.replace(",", ""))
    if denominator is not None:
        den = float(denominator)
        if den == 0:
            return None
        value /= den
    return -value if sign else value


def extract_number(text: str) -> float | None:
    """The final numeric answer in a model's text.

    An explicit final answer wins: GSM8K's `#### N`, LaTeX `\\boxed{N}`, then "the answer
    is N" / "Answer: N" (the last such mention). Otherwise the last number in the text.
    Thousands commas, currency signs, units and percent signs are ignored.
    """
    text = _CALC.sub("", text)
    for marker in _FINAL_MARKERS:
        for found in reversed(marker.findall(text)):
            value = parse_number(found)
            if value is not None:
                return value
    last: float | None = None
    for m in _NUMBER.finditer(text):
        value = parse_number(m.group(0))
        if value is not None:
            last = value
    return last


def numbers_match(got: float, want: float, abs_tol: float, rel_tol: float) -> bool:
    return math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)


# -- multiple choice ---------------------------------------------------------------------


def extract_choice(text: str, choices: str = "ABCD") -> str | None:
    """The letter a model chose: "The answer is (B)", "Answer: C", "**D**", "B. Paris", "A".

    Explicit answer statements win (the last one); then a letter that opens the reply; then
    the only choice letter that stands alone in the text. None when it cannot tell.
    """
    cls = f"[{re.escape(choices)}{re.escape(choices.lower())}]"
    stripped = text.strip()
    explicit = re.findall(
        rf"(?i)(?:answer|choice|option)\s*(?:is|:)?\s*(?:is\s*)?[:\-]?\s*[\(\[*]*({cls})(?![A-Za-z])", stripped
    )
    explicit = [e for e in explicit if e.upper() in choices]
    if explicit:
        return explicit[-1].upper()
    m = re.match(rf"^[\s\(\[*]*({cls})(?:[\)\].:*\s]|$)", stripped)
    if m:
        return m.group(1).upper()
    alone = set(re.findall(rf"(?:^|[\s\(\[*])([{re.escape(choices)}])(?=[\)\].:*,\s]|$)", stripped))
    if len(alone) == 1:
        return alone.pop()
    return None


# -- JSON --------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, a fenced block, or the outermost {...}/[...]."""
    candidates = [text.strip()]
    candidates += [body.strip() for _, body in _FENCE.findall(text)]
    for open_ch, close_ch in (("{", "}"), ("[", "]")):
        start, end = text.find(open_ch), text.rfind(close_ch)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for cand in candidates:
        try:
            return json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ValueError("no JSON value found in the reply")


def extract_code(text: str) -> str:
    """The program in a reply: the longest fenced code block, or the whole text if none."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in {"", "python", "py", "python3"}]
    if not blocks:
        return text
    return max(blocks, key=len)


# -- the graders -------------------------------------------------------------------------

TYPES = ("exact", "normalized", "regex", "choice", "numeric", "json_schema", "embedding", "code", "judge")
_NEEDS_EXPECTED = {"exact", "normalized", "choice", "numeric", "embedding"}


def _regex_flags(spec: dict[str, Any]) -> int:
    flags = 0
    for ch in str(spec.get("flags", "")):
        flag = {"i": re.I, "m": re.M, "s": re.S, "x": re.X}.get(ch)
        if flag is None:
            raise GraderSpecError(f"regex flag {ch!r} is not one of i, m, s, x")
        flags |= flag
    return flags


def validate_spec(
    spec: dict[str, Any], expected: Any = None, has_expected: bool = True, *, check_expected: bool = True
) -> None:
    """Check a grader spec before anything runs, so that a bad eval line fails at load time.

    `check_expected=False` checks the spec alone (shadow graders get their `expected`, the
    reference answer, only at run time).
    """
    kind = spec.get("type")
    if kind not in TYPES:
        raise GraderSpecError(f"unknown type {kind!r}; known: {', '.join(TYPES)}")
    if not check_expected:
        expected, has_expected = None, False
    if check_expected and kind in _NEEDS_EXPECTED and (not has_expected or expected is None):
        raise GraderSpecError(f"{kind} needs 'expected'")
    if kind == "numeric":
        for e in _expected_list(expected) if has_expected else []:
            if extract_number(e) is None:
                raise GraderSpecError(f"numeric: expected {e!r} holds no number")
        for key in ("abs_tol", "rel_tol"):
            if not isinstance(spec.get(key, 0), int | float) or spec.get(key, 0) < 0:
                raise GraderSpecError(f"numeric: {key} must be a number >= 0")
    elif kind == "choice":
        choices = str(spec.get("choices", "ABCD"))
        if has_expected and not all(str(e).strip().upper() in choices for e in _expected_list(expected)):
            raise GraderSpecError(f"choice: expected {expected!r} is not one of {choices}")
    elif kind == "regex":
        pattern = spec.get("pattern", expected if has_expected else None)
        if pattern is None and not check_expected:
            pattern = ""
        if not isinstance(pattern, str):
            raise GraderSpecError("regex needs 'pattern' (or 'expected' as the pattern)")
        try:
            re.compile(pattern, _regex_flags(spec))
        except re.error as exc:
            raise GraderSpecError(f"regex: bad pattern: {exc}") from None
        if spec.get("match", "search") not in {"search", "fullmatch"}:
            raise GraderSpecError("regex: match must be 'search' or 'fullmatch'")
    elif kind == "json_schema":
        schema = spec.get("schema")
        if not isinstance(schema, dict | bool):
            raise GraderSpecError("json_schema needs 'schema' (a JSON Schema object)")
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise GraderSpecError(f"json_schema: invalid schema: {exc.message}") from None
    elif kind == "embedding":
        threshold = spec.get("threshold", 0.8)
        if not isinstance(threshold, int | float) or not -1 <= threshold <= 1:
            raise GraderSpecError("embedding: threshold must be between -1 and 1")
    elif kind == "code":
        tests = spec.get("tests")
        if not (isinstance(tests, str) and tests.strip()) and not (
            isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests)
        ):
            raise GraderSpecError("code needs 'tests': Python source or a list of assert lines")
        for key, top in (("timeout", 60), ("memory_mb", 4096)):
            v = spec.get(key, 1)
            if not isinstance(v, int | float) or not 0 < v <= top:
                raise GraderSpecError(f"code: {key} must be > 0 and <= {top}")
    elif kind == "judge":
        if not isinstance(spec.get("rubric"), str) or not spec["rubric"].strip():
            raise GraderSpecError("judge needs 'rubric' (what a good answer does)")
        scale = spec.get("scale", 10)
        if not isinstance(scale, int) or scale < 1:
            raise GraderSpecError("judge: scale must be a positive integer")
        pass_score = spec.get("pass_score", math.ceil(scale * 0.7))
        if not isinstance(pass_score, int | float) or not 0 <= pass_score <= scale:
            raise GraderSpecError("judge: pass_score must lie between 0 and scale")


async def grade(
    spec: dict[str, Any],
    response: str,
    expected: Any = None,
    *,
    prompt: str = "",
    services: Services | None = None,
) -> Grade:
    """Grade `response` by `spec` against `expected`. `prompt` is the question (for the judge)."""
    services = services or Services()
    kind = spec.get("type")
    if kind == "exact":
        want = _expected_list(expected)
        got = response.strip() if spec.get("strip", True) else response
        wants = [w.strip() for w in want] if spec.get("strip", True) else want
        return Grade.of(got in wants, value=got[:200])
    if kind == "normalized":
        got = normalize_text(response)
        return Grade.of(got in {normalize_text(w) for w in _expected_list(expected)}, value=got[:200])
    if kind == "regex":
        pattern = re.compile(spec.get("pattern", expected), _regex_flags(spec))
        matcher = pattern.fullmatch if spec.get("match", "search") == "fullmatch" else pattern.search
        target = response.strip() if spec.get("match") == "fullmatch" else response
        return Grade.of(matcher(target) is not None)
    if kind == "choice":
        choices = str(spec.get("choices", "ABCD"))
        letter = extract_choice(response, choices)
        if letter is None:
            return Grade.of(False, "no choice letter found")
        return Grade.of(letter in {e.strip().upper() for e in _expected_list(expected)}, value=letter)
    if kind == "numeric":
        got_n = extract_number(response)
        if got_n is None:
            return Grade.of(False, "no number in the reply")
        abs_tol = float(spec.get("abs_tol", 1e-6))
        rel_tol = float(spec.get("rel_tol", 0.0))
        for e in _expected_list(expected):
            want_n = extract_number(e)
            if want_n is not None and numbers_match(got_n, want_n, abs_tol, rel_tol):
                return Grade.of(True, value=got_n)
        return Grade.of(False, f"got {got_n:g}", value=got_n)
    if kind == "json_schema":
        return _grade_json(spec, response)
    if kind == "embedding":
        return await _grade_embedding(spec, response, expected, services)
    if kind == "code":
        return await _grade_code(spec, response)
    if kind == "judge":
        return await _grade_judge(spec, response, expected, prompt, services)
    raise GraderSpecError(f"unknown grader type {kind!r}")


def _grade_json(spec: dict[str, Any], response: str) -> Grade:
    import jsonschema

    try:
        value = extract_json(response)
    except ValueError as exc:
        return Grade.of(False, str(exc))
    validator = jsonschema.validators.validator_for(spec["schema"])(spec["schema"])
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        return Grade.of(False, f"{where}: {first.message}"[:300])
    return Grade.of(True)


async def _grade_embedding(spec: dict[str, Any], response: str, expected: Any, services: Services) -> Grade:
    try:
        embed = services.embedder()
        texts = [response, *_expected_list(expected)]
        vecs = await asyncio.to_thread(embed, texts)
    except Exception as exc:  # the model files may be missing on this machine
        return Grade.ungraded(f"embedder unavailable: {exc}")
    sims = vecs[1:] @ vecs[0]
    best = float(np.max(sims))
    threshold = float(spec.get("threshold", 0.8))
    return Grade.of(best >= threshold, f"similarity {best:.3f} (threshold {threshold})", value=round(best, 4))


def _test_source(tests: str | list[str]) -> str:
    if isinstance(tests, str):
        return tests
    return "\n".join(tests)


async def _grade_code(spec: dict[str, Any], response: str) -> Grade:
    program = "\n\n".join(
        part for part in (spec.get("setup", ""), extract_code(response), _test_source(spec["tests"])) if part
    )
    limits = sandbox.Limits(timeout_s=float(spec.get("timeout", 5)), memory_mb=int(spec.get("memory_mb", 256)))
    result = await sandbox.run_python(program, limits)
    if result.ok:
        return Grade.of(True, f"tests passed in {result.duration_s:.2f}s")
    if result.killed_reason:
        return Grade.of(False, f"stopped: {result.killed_reason}", value=result.killed_reason)
    last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return Grade.of(False, last[:300])


JUDGE_SYSTEM = (
    "You are a strict grader. Judge the assistant's answer to the user's question against the "
    "rubric{ref}. Think briefly, then finish with a line of the form 'Score: N' where N is an "
    "integer from 0 to {scale}."
)

_SCORE = re.compile(r"(?i)score\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?")


def judge_messages(spec: dict[str, Any], prompt: str, response: str, expected: Any) -> list[dict[str, Any]]:
    scale = int(spec.get("scale", 10))
    has_ref = expected is not None and spec.get("use_expected", True)
    system = JUDGE_SYSTEM.format(ref=" and the reference answer" if has_ref else "", scale=scale)
    user = f"Rubric:\n{spec['rubric']}\n\nQuestion:\n{prompt}\n\n"
    if has_ref:
        user += f"Reference answer:\n{expected if isinstance(expected, str) else json.dumps(expected)}\n\n"
    user += f"Assistant's answer:\n{response}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_judge_score(text: str, scale: int) -> float | None:
    found = _SCORE.findall(text)
    if not found:
        return None
    number, out_of = found[-1]
    value = float(number)
    if out_of and int(out_of) != scale and int(out_of) > 0:
        value = value * scale / int(out_of)
    if not 0 <= value <= scale:
        return None
    return value


async def _grade_judge(spec: dict[str, Any], response: str, expected: Any, prompt: str, services: Services) -> Grade:
    model = spec.get("model") or services.judge_model
    if services.judge is None or not model:
        return Grade.ungraded("no judge model configured")
    scale = int(spec.get("scale", 10))
    pass_score = float(spec.get("pass_score", math.ceil(scale * 0.7)))
    timeout = float(spec.get("timeout", 60))
    try:
        text = await asyncio.wait_for(services.judge(model, judge_messages(spec, prompt, response, expected), timeout), timeout)
    except TimeoutError:
        return Grade.ungraded(f"judge {model} timed out after {timeout:g}s")
    except Exception as exc:
        return Grade.ungraded(f"judge {model} failed: {type(exc).__name__}: {exc}"[:300])
    score = parse_judge_score(text or "", scale)
    if score is None:
        return Grade.ungraded(f"judge {model} gave no readable score")
    return Grade("pass" if score >= pass_score else "fail", score / scale, f"judge {model}: {score:g}/{scale}", score)
