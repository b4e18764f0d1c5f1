"""OpenAI chat completions on the wire: usage, and streams to bodies and back.

The gateway needs a complete body for things that only make sense on a whole answer (the
cache stores one, the ledger bills one) while clients may have asked for a stream, so a
stream is collected into the exact `chat.completion` body the API would have returned,
and a stored body is replayed as chunks that SDKs accept like a live stream.
"""

from __future__ import annotations

import copy
from typing import Any

from thrifty.protocol.pieces import split_even, split_text
from thrifty.types import SSEEvent, Usage

DONE = "[DONE]"

#: Chunk-level fields that are copied from the stream onto the collected body.
_ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")


#: No request uses more tokens than this; a count past it (or below 0) is an upstream's bug
#: and must not reach the ledger, whose integer money columns it would overflow.
MAX_TOKENS_REPORTED = 10**9


def _int(value: Any) -> int:
    if type(value) is int and 0 <= value <= MAX_TOKENS_REPORTED:  # the usual case, checked first
        return value
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0
    return min(max(int(value), 0), MAX_TOKENS_REPORTED)


def usage_from_openai(usage: dict[str, Any] | None) -> Usage:
    """Read OpenAI's usage block. `prompt_tokens` includes the cached tokens, so they are split out."""
    if not usage or not isinstance(usage, dict):
        return Usage()
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = _int(details.get("cached_tokens"))
    if not cached:  # DeepSeek reports cache hits at the top level
        cached = _int(usage.get("prompt_cache_hit_tokens"))
    completion_details = usage.get("completion_tokens_details")
    reasoning = _int(completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0)
    return Usage(
        input_tokens=max(prompt - cached, 0),
        cache_read_tokens=cached,
        output_tokens=_int(usage.get("completion_tokens")),
        reasoning_tokens=reasoning,
    )


def usage_to_openai(u: Usage) -> dict[str, Any]:
    """Write `u` as OpenAI's usage block (cache writes, which OpenAI does not bill apart, count as prompt)."""
    prompt = u.total_input_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def tool_call_index(call: dict[str, Any], position: int, known: dict[int, str]) -> int:
    """Which tool call a streamed tool-call delta belongs to.

    `known` maps the indexes seen so far to their ids. Some servers leave `index` out and
    send each call whole: then a new id starts a new call, and a delta without an id
    continues the latest one.
    """
    index = call.get("index")
    if isinstance(index, int):
        return index
    if call.get("id") and call["id"] not in known.values():
        return max(known, default=-1) + 1
    return max(known, default=position)


class _Choice:
    """One choice being assembled from its deltas."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, str] | None = None
        self.annotations: list[Any] | None = None
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.extra: dict[str, Any] = {}

    def add(self, choice: dict[str, Any]) -> None:
        for key, value in (choice.get("delta") or {}).items():  # usually a single key
            if value is None:
                continue
            if key == "content":
                self.content.append(value)
            elif key == "role":
                self.role = value or self.role
            elif key == "refusal":
                self.refusal = (self.refusal or []) + [value]
            elif key == "tool_calls":
                for position, call in enumerate(value):
                    self._add_tool_call(position, call)
            elif key == "function_call":
                fc = self.function_call or {"name": "", "arguments": ""}
                fc["name"] += value.get("name") or ""
                fc["arguments"] += value.get("arguments") or ""
                self.function_call = fc
            elif key == "annotations":
                self.annotations = (self.annotations or []) + list(value)
            elif key in ("reasoning_content", "reasoning") and isinstance(value, str):  # vLLM, DeepSeek
                self.extra[key] = self.extra.get(key, "") + value
        logprobs = choice.get("logprobs")
        if logprobs:
            merged = self.logprobs or {}
            for key, items in logprobs.items():
                if isinstance(items, list):
                    merged[key] = (merged.get(key) or []) + items
                elif key not in merged:
                    merged[key] = items
            self.logprobs = merged
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _add_tool_call(self, position: int, call: dict[str, Any]) -> None:
        index = tool_call_index(call, position, {i: c["id"] for i, c in self.tool_calls.items()})
        slot = self.tool_calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def body(self) -> dict[str, Any]:
        text = "".join(self.content)
        has_other = bool(self.tool_calls or self.refusal or self.function_call)
        message: dict[str, Any] = {
            "role": self.role,
            "content": text if text or not has_other else None,
            "refusal": "".join(self.refusal) if self.refusal is not None else None,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.function_call:
            message["function_call"] = self.function_call
        if self.annotations is not None:
            message["annotations"] = self.annotations
        message.update(self.extra)
        return {
            "index": self.index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


def collect_openai(events: list[SSEEvent]) -> dict[str, Any]:
    """Assemble the `chat.completion` body that a stream of chunks amounts to.

    A stream cut short gives a body whose `finish_reason` is None; error chunks are ignored.
    """
    envelope: dict[str, Any] = {}
    choices: dict[int, _Choice] = {}
    usage: dict[str, Any] | None = None
    for event in events:
        chunk = event.data
        if not isinstance(chunk, dict) or "error" in chunk:
            continue
        if not envelope or chunk.get("system_fingerprint"):
            envelope.update(
                (k, chunk[k]) for k in _ENVELOPE if chunk.get(k) is not None and k not in envelope
            )
            if chunk.get("system_fingerprint"):
                envelope["system_fingerprint"] = chunk["system_fingerprint"]
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            if index not in choices:
                choices[index] = _Choice(index)
            choices[index].add(choice)
    body: dict[str, Any] = {
        "id": envelope.get("id", ""),
        "object": "chat.completion",
        "created": envelope.get("created", 0),
        "model": envelope.get("model", ""),
        "choices": [choices[i].body() for i in sorted(choices)],
    }
    for key in ("system_fingerprint", "service_tier"):
        if key in envelope:
            body[key] = envelope[key]
    if usage is not None:
        body["usage"] = usage
    return body


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    """The fields every chunk of a replay repeats."""
    base: dict[str, Any] = {
        "id": body.get("id", ""),
        "object": "chat.completion.chunk",
        "created": body.get("created", 0),
        "model": body.get("model", ""),
    }
    for key in ("system_fingerprint", "service_tier"):
        if key in body:
            base[key] = body[key]
    return base


def _chunk(base: dict[str, Any], choices: list[dict[str, Any]], **extra: Any) -> SSEEvent:
    return SSEEvent(data={**base, "choices": choices, **extra})


def _choice_chunks(base: dict[str, Any], choice: dict[str, Any]) -> list[SSEEvent]:
    index = choice.get("index", 0)
    message = choice.get("message") or {}

    def delta(d: dict[str, Any], **extra: Any) -> SSEEvent:
        return _chunk(base, [{"index": index, "delta": d, "logprobs": None, "finish_reason": None, **extra}])

    content = message.get("content")
    if isinstance(content, list):  # content parts: only the text streams
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    first: dict[str, Any] = {"role": message.get("role") or "assistant"}
    first["content"] = "" if isinstance(content, str) else None
    events = [delta(first)]
    for key in ("reasoning_content", "reasoning"):
        for piece in split_text(message.get(key) or ""):
            events.append(delta({key: piece}))
    pieces = split_text(content or "")
    logprobs = copy.deepcopy(choice.get("logprobs"))
    for i, piece in enumerate(pieces):  # all logprobs ride on the first content piece
        events.append(delta({"content": piece}, logprobs=logprobs if i == 0 else None))
    if logprobs and not pieces:
        events.append(delta({}, logprobs=logprobs))
    if message.get("refusal"):
        events.append(delta({"refusal": message["refusal"]}))
    if message.get("annotations"):
        events.append(delta({"annotations": copy.deepcopy(message["annotations"])}))
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        start = {
            "index": i,
            "id": call.get("id", ""),
            "type": call.get("type", "function"),
            "function": {"name": function.get("name", ""), "arguments": ""},
        }
        events.append(delta({"tool_calls": [start]}))
        for fragment in split_even(function.get("arguments") or ""):
            events.append(delta({"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}))
    if message.get("function_call"):
        events.append(delta({"function_call": copy.deepcopy(message["function_call"])}))
    events.append(
        _chunk(
            base,
            [{"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")}],
        )
    )
    return events


def replay_openai(body: dict[str, Any], include_usage: bool) -> list[SSEEvent]:
    """Turn a complete `chat.completion` body into the chunks a live stream would have sent.

    The usage chunk (empty `choices`) is sent only when the client asked for it with
    `stream_options.include_usage`; the last event is always `[DONE]`.
    """
    base = _envelope(body)
    events: list[SSEEvent] = []
    for choice in body.get("choices") or []:
        events.extend(_choice_chunks(base, choice))
    if include_usage and body.get("usage"):
        events.append(_chunk(base, [], usage=copy.deepcopy(body["usage"])))
    events.append(SSEEvent(data=DONE))
    return events


def finish_reason_of(body: dict[str, Any]) -> str | None:
    """The first choice's finish reason (None for a body without choices)."""
    choices = body.get("choices") or []
    return choices[0].get("finish_reason") if choices else None

