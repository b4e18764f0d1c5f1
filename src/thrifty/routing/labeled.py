"""The labeled routing format: one JSON line per prompt with every candidate's quality and cost.

It is what the router trains, calibrates and is evaluated on, and what the replay provider
answers from, so every source (RouterBench, RouteLLM, `thrifty eval` runs, judged shadow
traffic) is converted to it once:

    {"id": "mbpp.dev.92", "prompt": "Write a function ...",
     "candidates": {"gpt-4-1106-preview": {"quality": 1.0, "cost": 0.0064, "response": "..."}}}

`messages` (OpenAI chat messages) may stand in for `prompt`. Costs are USD per call; they are
read as Decimal from their JSON text so that a recorded cost is reproduced exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from thrifty.errors import DataError


class LabeledDataError(DataError):
    """A labeled file has bad lines; `problems` holds (line number, message) pairs."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        shown = "\n  ".join(f"{path}:{n}: {msg}" for n, msg in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad line(s) in {path}:\n  {shown}{more}")


@dataclass
class Candidate:
    """One model's recorded outcome on a prompt."""

    quality: float
    cost: Decimal
    response: str | None = None
    #: the provider's mean token logprob of the response, where it was recorded (a cascade signal)
    mean_logprob: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"quality": self.quality, "cost": _decimal_json(self.cost)}
        if self.response is not None:
            out["response"] = self.response
        if self.mean_logprob is not None:
            out["mean_logprob"] = self.mean_logprob
        return out


@dataclass
class Example:
    """One prompt and what each candidate model did with it."""

    id: str
    candidates: dict[str, Candidate]
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text the router reads: the prompt, or the user turns of `messages`."""
        if self.prompt is not None:
            return self.prompt
        return messages_text(self.messages or [])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.messages is not None:
            out["messages"] = self.messages
        out["candidates"] = {m: c.to_json() for m, c in self.candidates.items()}
        if self.meta:
            out["meta"] = self.meta
        return out


def messages_text(messages: list[dict[str, Any]]) -> str:
    """The user turns of chat messages joined by blank lines (text parts only)."""
    parts: list[str] = []
    for m in messages:
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
    return "\n\n".join(parts)


def _decimal_json(d: Decimal) -> float | int:
    # json has no decimal type; the float repr of a value read from text round-trips to it.
    return int(d) if d == d.to_integral_value() and abs(d) < 2**53 else float(d)


def parse_example(obj: Any) -> Example:
    """Validate one decoded JSON line; raises ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("a line must be a JSON object")
    ident = obj.get("id")
    if not isinstance(ident, str | int) or isinstance(ident, bool) or str(ident) == "":
        raise ValueError('"id" must be a non-empty string')
    prompt = obj.get("prompt")
    messages = obj.get("messages")
    if prompt is None and messages is None:
        raise ValueError('needs "prompt" or "messages"')
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError('"prompt" must be a string')
    if messages is not None and (
        not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages)
    ):
        raise ValueError('"messages" must be a list of {"role", "content"} objects')
    cands = obj.get("candidates")
    if not isinstance(cands, dict) or not cands:
        raise ValueError('"candidates" must be a non-empty object of model -> {quality, cost}')
    out: dict[str, Candidate] = {}
    for model, c in cands.items():
        if not isinstance(c, dict):
            raise ValueError(f"candidate {model!r}: must be an object")
        q = c.get("quality")
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"candidate {model!r}: quality must be a number in 0..1, got {q!r}")
        cost_raw = c.get("cost")
        if isinstance(cost_raw, bool) or not isinstance(cost_raw, int | float | str):
            raise ValueError(f"candidate {model!r}: cost must be a number of USD, got {cost_raw!r}")
        try:
            cost = Decimal(str(cost_raw))
        except InvalidOperation:
            raise ValueError(f"candidate {model!r}: cost {cost_raw!r} is not a number") from None
        if not cost.is_finite() or cost < 0:
            raise ValueError(f"candidate {model!r}: cost must be >= 0, got {cost_raw!r}")
        resp = c.get("response")
        if resp is not None and not isinstance(resp, str):
            raise ValueError(f"candidate {model!r}: response must be a string")
        lp = c.get("mean_logprob")
        if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int | float)):
            raise ValueError(f"candidate {model!r}: mean_logprob must be a number")
        out[str(model)] = Candidate(float(q), cost, resp, None if lp is None else float(lp))
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError('"meta" must be an object')
    return Example(str(ident), out, prompt, messages, meta)


def iter_lines(path: str | Path) -> Iterator[tuple[int, Example | str]]:
    """(line number, Example) for good lines and (line number, error message) for bad ones."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_float=Decimal)
                yield n, parse_example(_decimals_to_float(obj))
            except json.JSONDecodeError as exc:
                yield n, f"not valid JSON: {exc.msg} (column {exc.colno})"
            except ValueError as exc:
                yield n, str(exc)


def _decimals_to_float(obj: Any, key: str | None = None) -> Any:
    """Keep `cost` values as exact decimal text; everything else as plain floats."""
    if isinstance(obj, dict):
        return {k: _decimals_to_float(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decimals_to_float(v) for v in obj]
    if isinstance(obj, Decimal):
        return str(obj) if key == "cost" else float(obj)
    return obj


def load_labeled(path: str | Path, *, strict: bool = True) -> list[Example]:
    """Read a labeled JSONL file. Bad lines raise `LabeledDataError` listing every line number
    (or, with strict=False, are skipped). Duplicate ids are bad lines too."""
    examples: list[Example] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, item in iter_lines(path):
        if isinstance(item, str):
            problems.append((n, item))
        elif item.id in seen:
            problems.append((n, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
        else:
            seen[item.id] = n
            examples.append(item)
    if problems and strict:
        raise LabeledDataError(str(path), problems)
    if not examples and strict:
        raise LabeledDataError(str(path), [(0, "no examples")])
    return examples


def write_labeled(examples: Iterable[Example], path: str | Path) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def data_hash(examples: Iterable[Example]) -> str:
    """A sha256 over the examples' canonical JSON: which data an artifact was trained on."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.to_json(), sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def common_candidates(examples: list[Example]) -> list[str]:
    """Models present on every example, in first-seen order."""
    if not examples:
        return []
    names = list(examples[0].candidates)
    for ex in examples[1:]:
        names = [m for m in names if m in ex.candidates]
    return names


def split_fixed(
    examples: list[Example], train_fraction: float = 0.8, salt: str = "thrifty"
) -> tuple[list[Example], list[Example]]:
    """A fixed split by a hash of each question's text: the same question (even repeated under
    another id) always lands on the same side, whatever the file order."""
    train: list[Example] = []
    test: list[Example] = []
    for ex in examples:
        digest = hashlib.sha256(f"{salt}:{ex.text}".encode()).hexdigest()
        bucket = int(digest[:8], 16) / 0xFFFFFFFF
        (train if bucket < train_fraction else test).append(ex)
    return train, test
