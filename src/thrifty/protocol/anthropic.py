"""Anthropic Messages on the wire: usage, and streams to bodies and back.

The same jobs as `thrifty.protocol.openai` for the Messages API: collect a stream of
`message_start` ... `message_stop` events into the `message` body the API would have
returned, and replay a body as the named events SDKs (and Claude Code) accept as live.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from thrifty.protocol.pieces import split_even, split_text
from thrifty.types import SSEEvent, Usage

#: No request uses more tokens than this; a count past it (or below 0) is an upstream's bug
#: and must not reach the ledger, whose integer money columns it would overflow.
MAX_TOKENS_REPORTED = 10**9


def _int(value: Any) -> int:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0
    return min(max(int(value), 0), MAX_TOKENS_REPORTED)


def usage_from_anthropic(usage: dict[str, Any] | None) -> Usage:
    """Read Anthropic's usage block; `input_tokens` there are already the uncached ones.

    Cache writes are split into 5-minute and 1-hour writes (priced apart) when the
    `cache_creation` breakdown is given, else all count as 5-minute writes.
    """
    if not usage or not isinstance(usage, dict):
        return Usage()
    written = _int(usage.get("cache_creation_input_tokens"))
    breakdown = usage.get("cache_creation")
    if isinstance(breakdown, dict):
        write_5m = _int(breakdown.get("ephemeral_5m_input_tokens"))
        write_1h = _int(breakdown.get("ephemeral_1h_input_tokens"))
        if write_5m + write_1h == 0 and written:  # an empty breakdown beside a total
            write_5m = written
    else:
        write_5m, write_1h = written, 0
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        cache_write_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        output_tokens=_int(usage.get("output_tokens")),
    )


def usage_to_anthropic(u: Usage) -> dict[str, Any]:
    """Write `u` as Anthropic's usage block (reasoning tokens are part of output there).

    The 5m/1h `cache_creation` breakdown is only written when there are 1-hour writes:
    without it all writes read back as 5-minute ones, and `message_delta` cannot carry it.
    """
    usage: dict[str, Any] = {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens + u.cache_write_1h_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }
    if u.cache_write_1h_tokens:
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": u.cache_write_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        }
    return usage


def _merge_usage(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Fold a `message_delta` usage (cumulative counts) into the message's usage."""
    for key, value in update.items():
        if value is not None:
            into[key] = copy.deepcopy(value)


def collect_anthropic(events: list[SSEEvent]) -> dict[str, Any]:
    """Assemble the `message` body that a Messages stream amounts to.

    A stream cut short gives a body whose `stop_reason` is None; a tool input whose JSON
    never completed is left as the `{}` it started with.
    """
    message: dict[str, Any] = {
        "id": "",
        "type": "message",
        "role": "assistant",
        "model": "",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, str] = {}
    for event in events:
        data = event.data
        if not isinstance(data, dict):
            continue
        kind = data.get("type") or event.event
        if kind == "message_start":
            start = copy.deepcopy(data.get("message") or {})
            blocks.update(enumerate(start.pop("content", None) or []))
            message.update(start)
        elif kind == "content_block_start":
            blocks[int(data.get("index", len(blocks)))] = copy.deepcopy(data.get("content_block") or {})
        elif kind == "content_block_delta":
            index = int(data.get("index", 0))
            _apply_delta(blocks.setdefault(index, {}), partial_json, index, data.get("delta") or {})
        elif kind == "content_block_stop":
            index = int(data.get("index", 0))
            _finish_json(blocks.get(index), partial_json.pop(index, None))
        elif kind == "message_delta":
            message.update(copy.deepcopy(data.get("delta") or {}))  # stop_reason, stop_sequence, ...
            _merge_usage(message.setdefault("usage", {}), data.get("usage") or {})
    for index, text in partial_json.items():  # blocks that never got their stop event
        _finish_json(blocks.get(index), text)
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _apply_delta(
    block: dict[str, Any], partial_json: dict[int, str], index: int, delta: dict[str, Any]
) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + (delta.get("text") or "")
    elif kind == "input_json_delta":
        partial_json[index] = partial_json.get(index, "") + (delta.get("partial_json") or "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature") or ""
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(copy.deepcopy(delta.get("citation")))


def _finish_json(block: dict[str, Any] | None, text: str | None) -> None:
    if block is None or not text:
        return
    with contextlib.suppress(ValueError):
        block["input"] = json.loads(text)


def _event(kind: str, **fields: Any) -> SSEEvent:
    return SSEEvent(event=kind, data={"type": kind, **fields})


def _empty_block(block: dict[str, Any]) -> dict[str, Any]:
    """The block as `content_block_start` announces it, before any delta."""
    kind = block.get("type")
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        if block.get("citations"):
            start["citations"] = []
        return start
    if kind in ("tool_use", "server_tool_use"):
        return {**copy.deepcopy(block), "input": {}}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return copy.deepcopy(block)  # redacted_thinking, tool results: sent whole


def _block_deltas(index: int, block: dict[str, Any]) -> list[SSEEvent]:
    def delta(d: dict[str, Any]) -> SSEEvent:
        return _event("content_block_delta", index=index, delta=d)

    kind = block.get("type")
    events: list[SSEEvent] = []
    if kind == "text":
        events += [
            delta({"type": "text_delta", "text": piece}) for piece in split_text(block.get("text", ""))
        ]
        for citation in block.get("citations") or []:
            events.append(delta({"type": "citations_delta", "citation": copy.deepcopy(citation)}))
    elif kind in ("tool_use", "server_tool_use") and block.get("input"):
        text = json.dumps(block["input"], ensure_ascii=False)
        events += [delta({"type": "input_json_delta", "partial_json": f}) for f in split_even(text)]
    elif kind == "thinking":
        events += [
            delta({"type": "thinking_delta", "thinking": p}) for p in split_text(block.get("thinking", ""))
        ]
        events.append(delta({"type": "signature_delta", "signature": block.get("signature", "")}))
    return events


def replay_anthropic(body: dict[str, Any]) -> list[SSEEvent]:
    """Turn a complete `message` body into the events a live Messages stream would have sent.

    As the real API does, `message_start` carries the input-side usage and `message_delta`
    the final cumulative usage; a `ping` follows `message_start`.
    """
    usage = copy.deepcopy(body.get("usage") or {})
    start = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("content", "usage")}
    start.update(
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage={**usage, "output_tokens": min(1, _int(usage.get("output_tokens")))},
    )
    events = [_event("message_start", message=start), _event("ping")]
    for index, block in enumerate(body.get("content") or []):
        events.append(_event("content_block_start", index=index, content_block=_empty_block(block)))
        events.extend(_block_deltas(index, block))
        events.append(_event("content_block_stop", index=index))
    delta_usage = {k: v for k, v in usage.items() if k != "cache_creation"}
    delta_usage["output_tokens"] = _int(usage.get("output_tokens"))
    events.append(
        _event(
            "message_delta",
            delta={"stop_reason": body.get("stop_reason"), "stop_sequence": body.get("stop_sequence")},
            usage=delta_usage,
        )
    )
    events.append(_event("message_stop"))
    return events


def finish_reason_of(body: dict[str, Any]) -> str | None:
    """Why the message ended (None for a message cut short)."""
    value = body.get("stop_reason")
    return value if isinstance(value, str) else None

