"""The one place that reads text out of a request or reply body, for every wire protocol.

Levers, graders, the audit and the router all need "the text of this": the user's last
turn, the whole prompt, the answer. Bodies come in the OpenAI chat shape (`messages`,
`choices[].message.content`, content as a string or a list of parts), the Anthropic shape
(`system`, `messages`, `content` blocks) and the legacy completion shape (`prompt`,
`choices[].text`); these functions read all of them and never raise on a malformed body.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

__all__ = [
    "answer_text",
    "answer_with_calls",
    "content_text",
    "last_user_text",
    "only_text",
    "request_text",
    "system_text",
    "tool_calls_text",
]


def content_text(content: Any, *, sep: str = "\n", types: Collection[str] | None = None) -> str:
    """The text of a message `content`: a string, or the text of its parts joined by `sep`
    (parts whose `type` is in `types`, when given; bare strings count as text)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str) and (types is None or part.get("type") in types):
            parts.append(part["text"])
    return sep.join(parts)


def only_text(content: Any) -> str | None:
    """The text of a content that holds nothing but text (parts joined by newlines); None
    when it also holds images, tool calls or anything else."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            return None
        parts.append(part["text"])
    return "\n".join(parts)


def system_text(body: dict[str, Any]) -> str:
    """The system prompt: Anthropic's `system`, or OpenAI's system/developer messages."""
    system = body.get("system")
    if system is not None:
        return content_text(system)
    texts = [
        content_text(m.get("content"))
        for m in body.get("messages") or []
        if isinstance(m, dict) and m.get("role") in ("system", "developer")
    ]
    return "\n".join(t for t in texts if t)


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user turn ("" when there is none)."""
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return content_text(msg.get("content"))
    return ""


def request_text(body: dict[str, Any], *, user_only: bool = True) -> str:
    """The text of a request: its user turns (or, with `user_only=False`, the system prompt
    and every turn), separated by blank lines; a legacy `prompt` when there are no turns."""
    parts: list[str] = []
    if not user_only:
        system = body.get("system")
        if isinstance(system, str):
            parts.append(system)
        elif isinstance(system, list):
            parts.extend(str(b.get("text", "")) for b in system if isinstance(b, dict))
    for m in body.get("messages") or []:
        if not isinstance(m, dict) or (user_only and m.get("role") != "user"):
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not parts and isinstance(body.get("prompt"), str):
        parts.append(body["prompt"])
    return "\n\n".join(parts)


def answer_text(body: dict[str, Any] | None) -> str:
    """The answer text of a complete reply body in any shape ("" when it has none, e.g. a
    reply that only called tools)."""
    if not isinstance(body, dict):
        return ""
    choices = body.get("choices")
    if isinstance(choices, list) and choices:
        first = choices[0] if isinstance(choices[0], dict) else {}
        message = first.get("message")
        if isinstance(message, dict):
            return content_text(message.get("content"), sep="")
        text = first.get("text")
        return text if isinstance(text, str) else ""
    blocks = body.get("content")
    if isinstance(blocks, list):
        return "".join(
            b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return ""


def _call_line(name: Any, arguments: Any) -> str:
    if isinstance(arguments, str):  # OpenAI sends the arguments as JSON text
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"{name}({' '.join(arguments.split())})"
    return f"{name}({json.dumps(arguments, sort_keys=True, ensure_ascii=False)})"


def tool_calls_text(body: dict[str, Any] | None) -> str:
    """The tool calls of a complete reply body, one per line as `name({...})` with the
    arguments as JSON with sorted keys, so that two answers making the same call read the
    same ("" when it calls none)."""
    return "\n".join(_tool_calls(body))


def _tool_calls(body: dict[str, Any] | None) -> list[str]:
    if not isinstance(body, dict):
        return []
    lines: list[str] = []
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                lines.append(_call_line(fn.get("name"), fn.get("arguments")))
    blocks = body.get("content")
    if isinstance(blocks, list):
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_use":
                lines.append(_call_line(b.get("name"), b.get("input")))
    return lines


def answer_with_calls(body: dict[str, Any] | None) -> str:
    """What a reply answers, for whoever judges it: its text, then its tool calls (see
    `tool_calls_text`) each on a line starting "[tool call] "."""
    text = answer_text(body)
    marked = "\n".join("[tool call] " + line for line in _tool_calls(body))
    return f"{text}\n{marked}" if text and marked else text or marked
