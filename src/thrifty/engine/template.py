"""Chat messages to a prompt: the GGUF's chat template, or plain text for base models.

A base model has never seen chat markup, so it gets a transcript it can continue
("User: ... / Assistant:") and a stop string that ends its turn before it writes the next
user line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PLAIN_STOP = "\nUser:"


@dataclass
class Prompt:
    text: str
    #: Stop strings the template itself needs (added to the request's own).
    stop: list[str] = field(default_factory=list)
    #: Whether the text already holds special tokens (chat markup) to parse.
    special: bool = False




def plain_prompt(messages: list[tuple[str, str]]) -> Prompt:
    lines: list[str] = []
    for role, text in messages:
        if role in ("system", "developer"):
            lines.append(text.strip() + "\n")
        elif role == "assistant":
            lines.append(f"Assistant: {text.strip()}")
        else:
            lines.append(f"User: {text.strip()}")
    lines.append("Assistant:")
    return Prompt("\n".join(lines), stop=[PLAIN_STOP])


def is_base_model(name: str | None, template: str | None) -> bool:
    """A GGUF with no chat template, or one whose name does not say it was instruction-tuned."""
    if not template:
        return True
    label = (name or "").lower().replace("_", "-")
    tuned = any(mark in label for mark in ("-it", "instruct", "chat", "-sft", "dpo", "rlhf"))
    return not tuned


Mode = Literal["plain", "chat"]
