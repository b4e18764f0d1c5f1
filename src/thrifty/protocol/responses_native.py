"""The Responses API as an upstream speaks it: usage, stream endings, replay and collection.

When a provider serves `/v1/responses` itself, thrifty relays its `response` objects and
its stream events as they are (reasoning items with `encrypted_content`, built-in tool
calls, annotations: nothing is rebuilt). What thrifty needs from them is read here: the
usage to bill, whether a stream ended well, the whole response a finished stream amounts
to (for the exact cache), and the events a stored response is replayed as (a cache hit
asked for as a stream).
"""

from __future__ import annotations

from typing import Any

from thrifty.types import SSEEvent, Usage

__all__ = [
    "FINAL_EVENTS",
    "collect_response",
    "event_text",
    "is_response",
    "is_response_event",
    "replay_response",
    "usage_from_responses",
]

#: The events that end a Responses stream, each carrying the final `response` object.
FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_from_responses(usage: Any) -> Usage:
    """Read a Responses `usage` block: `input_tokens` include the cached ones (split out, as
    they are priced apart), `output_tokens` include the reasoning tokens."""
    if not isinstance(usage, dict):
        return Usage()
    total_in = _int(usage.get("input_tokens"))
    details = usage.get("input_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out_details = usage.get("output_tokens_details")
    reasoning = _int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    return Usage(input_tokens=max(total_in - cached, 0), cache_read_tokens=min(cached, total_in),
                 output_tokens=_int(usage.get("output_tokens")), reasoning_tokens=reasoning)


def is_response(body: Any) -> bool:
    """Whether `body` is a Responses `response` object (not a chat completion)."""
    return isinstance(body, dict) and body.get("object") == "response"


def is_response_event(ev: SSEEvent) -> bool:
    """Whether `ev` is a Responses stream event (not a chat-completion chunk)."""
    data = ev.data
    if not isinstance(data, dict):
        return False
    kind = data.get("type")
    return isinstance(kind, str) and (kind.startswith("response.") or kind == "error")


def event_text(data: dict[str, Any]) -> str:
    """The answer text one Responses event adds (for estimating a stream cut short)."""
    kind = data.get("type")
    if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                "response.reasoning_summary_text.delta", "response.refusal.delta"):
        delta = data.get("delta")
        return delta if isinstance(delta, str) else ""
    return ""


def collect_response(events: list[SSEEvent]) -> dict[str, Any] | None:
    """The `response` a finished stream amounts to: the one its `response.completed` event
    carries (None when the stream did not complete)."""
    for ev in reversed(events):
        data = ev.data
        if isinstance(data, dict) and data.get("type") == "response.completed" and is_response(data.get("response")):
            response: dict[str, Any] = data["response"]
            return response
    return None


def replay_response(response: dict[str, Any]) -> list[SSEEvent]:
    """The events of a stream that ends in `response` (a stored answer served as a stream):
    each output item added and done, text parts with one delta each, then the final event."""
    sequence = 0
    events: list[SSEEvent] = []

    def emit(kind: str, **fields: Any) -> None:
        nonlocal sequence
        events.append(SSEEvent(event=kind, data={"type": kind, "sequence_number": sequence, **fields}))
        sequence += 1

    opening = {**response, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    for index, item in enumerate(response.get("output") or []):
        if not isinstance(item, dict):
            continue
        added = {**item, "status": "in_progress"}
        if item.get("type") == "message":
            added["content"] = []
        emit("response.output_item.added", output_index=index, item=added)
        item_id = item.get("id")
        if item.get("type") == "message":
            for part_index, part in enumerate(item.get("content") or []):
                if not isinstance(part, dict):
                    continue
                common = {"item_id": item_id, "output_index": index, "content_index": part_index}
                if part.get("type") == "output_text":
                    emit("response.content_part.added", **common, part={**part, "text": ""})
                    emit("response.output_text.delta", **common, delta=part.get("text", ""), logprobs=[])
                    emit("response.output_text.done", **common, text=part.get("text", ""), logprobs=[])
                else:
                    emit("response.content_part.added", **common, part=part)
                emit("response.content_part.done", **common, part=part)
        elif item.get("type") == "function_call":
            emit("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                 delta=item.get("arguments", ""))
            emit("response.function_call_arguments.done", item_id=item_id, output_index=index,
                 arguments=item.get("arguments", ""))
        emit("response.output_item.done", output_index=index, item=item)
    final = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
        str(response.get("status")), "response.completed")
    emit(final, response=response)
    return events
