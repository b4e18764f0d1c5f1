"""Eval sets: JSONL files of requests with what a good answer looks like.

One line is one item:

    {"id": "q1", "request": {<OpenAI chat body>}, "expected": ..., "grader": {"type": "numeric"}}
    {"id": "q2", "prompt": "What is 2+2?", "expected": "4", "grader": {"type": "exact"}}

`prompt` is shorthand for a one-message chat request. `grader` defaults to `exact` when
`expected` is given. A line that cannot be used (bad JSON, no request, unknown grader, a
grader missing its settings, a duplicate id) is reported with its line number and skipped,
so that one bad line never hides the rest of a set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.errors import DataError
from thrifty.protocol.view import content_text


class SetError(DataError):
    """An eval line that cannot be used; the message says why."""


@dataclass(frozen=True)
class LineProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class EvalItem:
    """One request to run and the spec that grades its answer."""

    id: str
    request: dict[str, Any]
    grader: dict[str, Any]
    expected: Any = None
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        msgs = self.request.get("messages")
        return list(msgs) if isinstance(msgs, list) else []

    @property
    def prompt_text(self) -> str:
        """The last user message as plain text (what a judge or a router reads)."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return content_text(msg.get("content"))
        return ""

    def key(self) -> str:
        """A stable hash of everything that decides this item's result (for the result cache)."""
        blob = json.dumps(
            {"id": self.id, "request": self.request, "expected": self.expected, "grader": self.grader},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class EvalSet:
    items: list[EvalItem]
    problems: list[LineProblem]
    source: str = ""

    def __len__(self) -> int:
        return len(self.items)




def parse_item(data: Any, line: int = 0) -> EvalItem:
    """Validate one decoded line into an `EvalItem`, raising `SetError` with the reason."""
    from thrifty.evals.graders import GraderSpecError, validate_spec

    if not isinstance(data, dict):
        raise SetError("a line must be a JSON object")
    item_id = data.get("id", f"line-{line}")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or str(item_id) == "":
        raise SetError("'id' must be a non-empty string or integer")
    request = data.get("request")
    prompt = data.get("prompt")
    if request is not None and prompt is not None:
        raise SetError("give either 'request' or 'prompt', not both")
    if request is None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise SetError("needs 'request' (an OpenAI chat body) or 'prompt' (a non-empty string)")
        request = {"messages": [{"role": "user", "content": prompt}]}
    if not isinstance(request, dict):
        raise SetError("'request' must be an object (an OpenAI chat completions body)")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SetError("'request.messages' must be a non-empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise SetError(f"'request.messages[{i}]' must be an object with a 'role'")
    grader = data.get("grader")
    if grader is None:
        if "expected" not in data:
            raise SetError("needs 'grader' (or 'expected', which grades with 'exact')")
        grader = {"type": "exact"}
    if isinstance(grader, str):
        grader = {"type": grader}
    if not isinstance(grader, dict):
        raise SetError("'grader' must be an object such as {\"type\": \"numeric\"}")
    try:
        validate_spec(grader, data.get("expected"), "expected" in data)
    except GraderSpecError as exc:
        raise SetError(f"grader: {exc}") from None
    meta = {k: v for k, v in data.items() if k not in {"id", "request", "prompt", "expected", "grader"}}
    return EvalItem(
        id=str(item_id), request=request, grader=grader, expected=data.get("expected"), line=line, meta=meta
    )


def parse_lines(lines: list[str], source: str = "") -> EvalSet:
    items: list[EvalItem] = []
    problems: list[LineProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("//"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(LineProblem(number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        try:
            item = parse_item(data, number)
        except SetError as exc:
            problems.append(LineProblem(number, str(exc)))
            continue
        if item.id in seen:
            problems.append(LineProblem(number, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
            continue
        seen[item.id] = number
        items.append(item)
    return EvalSet(items=items, problems=problems, source=source)


def load_set(path: str | Path) -> EvalSet:
    """Read an eval set; malformed lines end up in `.problems`, never in `.items`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SetError(f"eval set not found: {p}") from None
    except UnicodeDecodeError:
        raise SetError(f"{p}: not UTF-8 text") from None
    return parse_lines(text.splitlines(), source=str(p))
