"""Streams translated event by event, so a client streaming in one protocol can be served by
a model that streams in the other without waiting for the whole answer.

Each translator is fed the upstream's events in order and returns the events to send on;
`finish()` is called once the upstream stream has ended and returns whatever closing events
are still owed. A stream that ended before its finish reason is incomplete: `finish()` then
returns nothing and the caller ends the client's stream with an error.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from thrifty.protocol.anthropic import usage_from_anthropic, usage_to_anthropic
from thrifty.protocol.errors import (
    anthropic_error_to_openai,
    openai_error_to_anthropic,
    status_of_anthropic_error,
)
from thrifty.protocol.mapping import anthropic_id, finish_reason_for, openai_id, stop_reason_for
from thrifty.protocol.openai import DONE, tool_call_index, usage_from_openai, usage_to_openai
from thrifty.types import SSEEvent, Usage


class AnthropicToOpenAIStream:
    """Anthropic Messages events in, OpenAI `chat.completion.chunk`s out (ending with `[DONE]`)."""

    def __init__(self, include_usage: bool, created: int | None = None) -> None:
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self.id = ""
        self.model = ""
        self.stop_reason: str | None = None
        self.complete = False
        self._usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    @property
    def usage(self) -> Usage:
        """The token counts reported so far (final once the stream is complete)."""
        return usage_from_anthropic(self._usage)

    def _chunk(
        self, delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any
    ) -> SSEEvent:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return SSEEvent(data=data)

    def feed(self, event: SSEEvent) -> list[SSEEvent]:
        data = event.data
        if self.complete or not isinstance(data, dict):
            return []
        kind = data.get("type") or event.event
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = openai_id(message.get("id") or "")
            self.model = message.get("model") or ""
            self._usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index.setdefault(int(data.get("index", 0)), len(self._tool_index))
                call = {
                    "index": index,
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                tool = self._tool_index.get(int(data.get("index", 0)))
                if tool is not None:
                    call = {"index": tool, "function": {"arguments": delta["partial_json"]}}
                    return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason or "end_turn"
            return [self._chunk({}, finish_reason_for(self.stop_reason))]
        if kind == "message_stop":
            return self._close()
        if kind == "error":
            self.complete = True
            status = status_of_anthropic_error((data.get("error") or {}).get("type"))
            return [SSEEvent(data=anthropic_error_to_openai(status, data))]
        return []  # ping, content_block_stop

    def _close(self) -> list[SSEEvent]:
        self.complete = True
        events = []
        if self.include_usage:
            events.append(self._chunk(None, usage=usage_to_openai(self.usage)))
        events.append(SSEEvent(data=DONE))
        return events

    def finish(self) -> list[SSEEvent]:
        """Closing events owed after the upstream ended: none if complete or cut short."""
        if self.complete or self.stop_reason is None:
            return []
        return self._close()


class OpenAIToAnthropicStream:
    """OpenAI `chat.completion.chunk`s in (first choice only), Anthropic Messages events out.

    The final usage comes last in an OpenAI stream, so `message_delta` (which carries it,
    input tokens included) is sent when the upstream's `[DONE]` arrives or it ends.
    """

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.finish_reason: str | None = None
        self.complete = False
        self._started = False
        self._usage: dict[str, Any] | None = None
        self._open: int | None = None  # index of the block being streamed
        self._open_kind = ""
        self._blocks = 0
        self._tool_block: dict[int, int] = {}  # OpenAI tool_calls index -> Anthropic block index
        self._tool_ids: dict[int, str] = {}  # OpenAI tool_calls index -> call id

    @property
    def usage(self) -> Usage:
        """The token counts reported so far (final once the stream is complete)."""
        return usage_from_openai(self._usage)

    def _start(self, chunk: dict[str, Any]) -> list[SSEEvent]:
        self._started = True
        self.id = anthropic_id(chunk.get("id") or "")
        self.model = chunk.get("model") or ""
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [_event("message_start", message=message), _event("ping")]

    def _close_block(self) -> list[SSEEvent]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [_event("content_block_stop", index=index)]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[SSEEvent]:
        events = self._close_block()
        self._open, self._open_kind = self._blocks, kind
        self._blocks += 1
        events.append(_event("content_block_start", index=self._open, content_block=block))
        return events

    def _text(self, text: str) -> list[SSEEvent]:
        events = (
            []
            if self._open is not None and self._open_kind == "text"
            else self._open_block("text", {"type": "text", "text": ""})
        )
        events.append(
            _event("content_block_delta", index=self._open, delta={"type": "text_delta", "text": text})
        )
        return events

    def _tool_call(self, position: int, call: dict[str, Any]) -> list[SSEEvent]:
        index = tool_call_index(call, position, self._tool_ids)
        function = call.get("function") or {}
        events: list[SSEEvent] = []
        if index not in self._tool_block:
            block = {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": {},
            }
            events += self._open_block("tool", block)
            assert self._open is not None
            self._tool_block[index] = self._open
            self._tool_ids[index] = call.get("id") or ""
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            events.append(_event("content_block_delta", index=self._tool_block[index], delta=delta))
        return events

    def feed(self, event: SSEEvent) -> list[SSEEvent]:
        data = event.data
        if self.complete:
            return []
        if data == DONE:
            return self._close(self.finish_reason or "stop")
        if not isinstance(data, dict):
            return []
        if "error" in data:
            self.complete = True
            error = openai_error_to_anthropic(500, data)
            return [SSEEvent(event="error", data=error)]
        events = [] if self._started else self._start(data)
        if data.get("usage"):
            self._usage = data["usage"]
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str) and delta[key]:
                    events += self._text(delta[key])
            for position, call in enumerate(delta.get("tool_calls") or []):
                events += self._tool_call(position, call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                events += self._close_block()
        return events

    def _close(self, finish_reason: str) -> list[SSEEvent]:
        events = [] if self._started else self._start({})
        events += self._close_block()
        self.complete = True
        usage = usage_to_anthropic(self.usage)
        delta = {"stop_reason": stop_reason_for(finish_reason), "stop_sequence": None}
        events.append(_event("message_delta", delta=delta, usage=usage))
        events.append(_event("message_stop"))
        return events

    def finish(self) -> list[SSEEvent]:
        """Closing events owed after the upstream ended: none if complete or cut short."""
        if self.complete or self.finish_reason is None:
            return []
        return self._close(self.finish_reason)


def _event(kind: str, **fields: Any) -> SSEEvent:
    return SSEEvent(event=kind, data={"type": kind, **fields})


def encode_event(ev: SSEEvent) -> bytes:
    """Serialise one event for the wire."""
    data = ev.data if isinstance(ev.data, str) else orjson.dumps(ev.data).decode()
    if ev.event:
        return f"event: {ev.event}\ndata: {data}\n\n".encode()
    return b"data: " + data.encode() + b"\n\n"
