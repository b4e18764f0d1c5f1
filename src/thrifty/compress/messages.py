"""A protocol-neutral view of the text in a chat request, for levers that rewrite text.

OpenAI chat completions and Anthropic messages keep text in different places (a system
message or a `system` field; string content or a list of blocks; Anthropic text documents).
`text_refs` lists every editable text in prompt order as a `TextRef` that can be read and
written in place, so a lever writes its logic once for both protocols.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from thrifty.types import Wire

SYSTEM_ROLES = ("system", "developer")


@dataclass
class TextRef:
    """One editable piece of text: `holder[key]`, in message `index` (-1: Anthropic system)."""

    holder: dict[str, Any]
    key: str
    role: str
    index: int
    kind: str = "text"

    @property
    def text(self) -> str:
        value = self.holder.get(self.key)
        return value if isinstance(value, str) else ""

    @text.setter
    def text(self, value: str) -> None:
        self.holder[self.key] = value


def _content_refs(message: dict[str, Any], role: str, index: int) -> Iterator[TextRef]:
    content = message.get("content")
    if isinstance(content, str):
        yield TextRef(message, "content", role, index)
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            yield TextRef(block, "text", role, index)
        elif kind == "document":
            source = block.get("source")
            if (
                isinstance(source, dict)
                and source.get("type") == "text"
                and isinstance(source.get("data"), str)
            ):
                yield TextRef(source, "data", role, index, kind="document")


def text_refs(protocol: Wire, body: dict[str, Any]) -> list[TextRef]:
    """Every text of the prompt in order: system first, then each message's text parts."""
    refs: list[TextRef] = []
    if protocol == "anthropic":
        system = body.get("system")
        if isinstance(system, str):
            refs.append(TextRef(body, "system", "system", -1))
        elif isinstance(system, list):
            for block in system:
                if (
                    isinstance(block, dict)
                    and block.get("type") == "text"
                    and isinstance(block.get("text"), str)
                ):
                    refs.append(TextRef(block, "text", "system", -1))
    raw = body.get("messages")
    for i, message in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(message, dict):
            refs.extend(_content_refs(message, str(message.get("role", "")), i))
    return refs


def is_tool_result(message: dict[str, Any]) -> bool:
    """A message that only carries tool results (OpenAI role tool, Anthropic tool_result blocks)."""
    if message.get("role") == "tool":
        return True
    content = message.get("content")
    return (
        message.get("role") == "user"
        and isinstance(content, list)
        and bool(content)
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def last_user_index(body: dict[str, Any]) -> int | None:
    """Index in `body["messages"]` of the last user message that is not only tool results."""
    raw = body.get("messages")
    messages = raw if isinstance(raw, list) else []
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user" and not is_tool_result(m):
            return i
    return None


def message_text(message: dict[str, Any]) -> str:
    """All the text of one message, parts joined by newlines (for counting and embedding)."""
    return "\n".join(r.text for r in _content_refs(message, str(message.get("role", "")), 0))


def message_tokens_text(message: dict[str, Any]) -> str:
    """The text that a message costs: its text plus tool calls and results, as they are sent."""
    import json

    parts = [message_text(message)]
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("tool_use", "tool_result"):
                parts.append(json.dumps(block, ensure_ascii=False))
    if message.get("tool_calls"):
        parts.append(json.dumps(message["tool_calls"], ensure_ascii=False))
    return "\n".join(p for p in parts if p)
