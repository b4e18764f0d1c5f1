"""Legacy text completions (`/v1/completions`) as streams: collected into one body, and a
stored body replayed as the chunks a live stream would have sent.

The exact cache keeps one complete body per request whether it came whole or streamed, and
answers either kind of request from it; these two functions are what it needs for the
`text_completion` shape (chat's are in `thrifty.protocol.openai`).
"""

from __future__ import annotations

import copy
from typing import Any

from thrifty.protocol.openai import usage_to_openai
from thrifty.types import SSEEvent, Usage

__all__ = ["collect_completion", "replay_completion"]

_ENVELOPE = ("id", "object", "created", "model", "system_fingerprint")


def collect_completion(events: list[SSEEvent], usage: Usage) -> dict[str, Any] | None:
    """The `text_completion` body a finished stream amounts to (None when a choice has no
    finish reason: the answer is not whole)."""
    envelope: dict[str, Any] = {}
    texts: dict[int, list[str]] = {}
    finish: dict[int, Any] = {}
    for ev in events:
        data = ev.data
        if not isinstance(data, dict):
            continue
        for key in _ENVELOPE:
            if key in data and key not in envelope:
                envelope[key] = data[key]
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            texts.setdefault(index, []).append(str(choice.get("text") or ""))
            if choice.get("finish_reason"):
                finish[index] = choice["finish_reason"]
    if not texts or set(finish) != set(texts):
        return None
    choices = [{"index": i, "text": "".join(texts[i]), "logprobs": None, "finish_reason": finish[i]}
               for i in sorted(texts)]
    return {**envelope, "object": "text_completion", "choices": choices, "usage": usage_to_openai(usage)}


def replay_completion(body: dict[str, Any], include_usage: bool) -> list[SSEEvent]:
    """A complete `text_completion` body as stream chunks: one per choice with its whole
    text, the usage chunk when asked for, then `[DONE]`."""
    envelope = {k: body[k] for k in _ENVELOPE if k in body}
    events = [SSEEvent(data={**envelope, "choices": [{"index": c.get("index", 0), "text": c.get("text", ""),
                                                      "logprobs": None, "finish_reason": c.get("finish_reason")}]})
              for c in body.get("choices") or [] if isinstance(c, dict)]
    if include_usage and body.get("usage"):
        events.append(SSEEvent(data={**envelope, "choices": [], "usage": copy.deepcopy(body["usage"])}))
    events.append(SSEEvent(data="[DONE]"))
    return events
