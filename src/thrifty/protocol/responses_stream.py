"""A chat-completions stream told as a Responses stream, event by event.

The pipeline answers a streamed Responses request with `chat.completion.chunk`s (whatever
the provider spoke, the dispatcher has already translated its stream to chunks). This
translator turns each chunk into the Responses events an OpenAI SDK expects
(`response.output_item.added`, `response.output_text.delta`,
`response.function_call_arguments.delta`, ...), keeping the item ids of the stream and of
the final `response` object the same. The closing `response.completed` event is not emitted
here: the server first stores the finished response (so that a follow-up naming it works
the moment the client has read it), then sends `completed_event(final())`.
"""

from __future__ import annotations

import time
from typing import Any

from thrifty.protocol.openai import tool_call_index
from thrifty.protocol.responses import new_id, response_object
from thrifty.types import SSEEvent

__all__ = ["ChatToResponsesStream"]


class ChatToResponsesStream:
    """Feed it chat chunks; it returns Responses events. `final()` is the whole response."""

    def __init__(self, request: dict[str, Any], response_id: str, created_at: int | None = None) -> None:
        self.request = request
        self.id = response_id
        self.created_at = int(time.time()) if created_at is None else created_at
        self.sequence = 0
        self.items: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self._message: dict[str, Any] | None = None  # the open message item
        self._reasoning: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> open function_call item
        self._call_ids: dict[int, str] = {}
        self._started = False

    # -- events ------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> SSEEvent:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return SSEEvent(event=kind, data=data)

    def _snapshot(self, status: str) -> dict[str, Any]:
        return response_object(self.request, self.id, self.created_at, [], None, None, status=status)

    def start(self) -> list[SSEEvent]:
        """The two events every stream opens with."""
        if self._started:
            return []
        self._started = True
        return [self._event("response.created", response=self._snapshot("in_progress")),
                self._event("response.in_progress", response=self._snapshot("in_progress"))]

    def _index(self, item: dict[str, Any]) -> int:
        return self.items.index(item)

    def _open(self, item: dict[str, Any]) -> SSEEvent:
        self.items.append(item)
        return self._event("response.output_item.added", output_index=self._index(item), item=dict(item))

    def _close_reasoning(self) -> list[SSEEvent]:
        item, self._reasoning = self._reasoning, None
        if item is None:
            return []
        index = self._index(item)
        text = item["summary"][0]["text"]
        return [
            self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                        summary_index=0, text=text),
            self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                        summary_index=0, part=dict(item["summary"][0])),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _close_message(self) -> list[SSEEvent]:
        item, self._message = self._message, None
        if item is None:
            return []
        index = self._index(item)
        part = item["content"][0]
        item["status"] = "completed"
        return [
            self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                        text=part["text"], logprobs=[]),
            self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                        part=dict(part)),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _close_calls(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for key in sorted(self._calls):
            item = self._calls[key]
            item["status"] = "completed"
            index = self._index(item)
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   name=item["name"], arguments=item["arguments"]))
            out.append(self._event("response.output_item.done", output_index=index, item=item))
        self._calls.clear()
        return out

    # -- feeding -----------------------------------------------------------------------

    def feed(self, event: SSEEvent) -> list[SSEEvent]:
        data = event.data
        out = self.start()
        if not isinstance(data, dict):
            return out
        if data.get("model") and self.model is None:
            self.model = str(data["model"])
        if data.get("usage"):
            self.usage = data["usage"]
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._reason(reasoning)
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._text(text)
            for position, call in enumerate(delta.get("tool_calls") or []):
                if isinstance(call, dict):
                    out += self._call(position, call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                out += self._close_reasoning() + self._close_message() + self._close_calls()
        return out

    def _reason(self, text: str) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if self._reasoning is None:
            self._reasoning = {"type": "reasoning", "id": new_id("rs"), "summary": []}
            out.append(self._open(self._reasoning))
            self._reasoning["summary"] = [{"type": "summary_text", "text": ""}]
            out.append(self._event("response.reasoning_summary_part.added", item_id=self._reasoning["id"],
                                   output_index=self._index(self._reasoning), summary_index=0,
                                   part={"type": "summary_text", "text": ""}))
        self._reasoning["summary"][0]["text"] += text
        out.append(self._event("response.reasoning_summary_text.delta", item_id=self._reasoning["id"],
                               output_index=self._index(self._reasoning), summary_index=0, delta=text))
        return out

    def _text(self, text: str) -> list[SSEEvent]:
        out = self._close_reasoning()
        if self._message is None:
            self._message = {"type": "message", "id": new_id("msg"), "status": "in_progress", "role": "assistant",
                             "content": []}
            out.append(self._open(self._message))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._message["content"] = [part]
            out.append(self._event("response.content_part.added", item_id=self._message["id"],
                                   output_index=self._index(self._message), content_index=0, part=dict(part)))
        self._message["content"][0]["text"] += text
        out.append(self._event("response.output_text.delta", item_id=self._message["id"],
                               output_index=self._index(self._message), content_index=0, delta=text, logprobs=[]))
        return out

    def _call(self, position: int, call: dict[str, Any]) -> list[SSEEvent]:
        key = tool_call_index(call, position, self._call_ids)
        function = call.get("function") or {}
        out: list[SSEEvent] = []
        item = self._calls.get(key)
        if item is None:
            out += self._close_reasoning() + self._close_message()
            call_id = call.get("id") or new_id("call")
            self._call_ids[key] = call_id
            item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id,
                    "name": function.get("name") or "", "arguments": "", "status": "in_progress"}
            self._calls[key] = item
            out.append(self._open(item))
        elif function.get("name"):
            item["name"] += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=self._index(item), delta=arguments))
        return out

    # -- the end -----------------------------------------------------------------------

    def final(self) -> dict[str, Any]:
        """The finished `response` object (items still open are closed as they stand)."""
        for item in self.items:
            if item.get("status") == "in_progress":
                item["status"] = "completed"
        return response_object(self.request, self.id, self.created_at, self.items, self.finish_reason, self.usage,
                               model=self.request.get("model"))

    def completed_event(self, response: dict[str, Any]) -> SSEEvent:
        """`response.completed` (or `response.incomplete` when the answer was cut by a limit)."""
        kind = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
        return self._event(kind, response=response)

    def failed_event(self, message: str, code: str = "server_error") -> SSEEvent:
        """`response.failed`, for a stream that broke after its first byte."""
        response = response_object(self.request, self.id, self.created_at, self.items, None, self.usage,
                                   status="failed")
        response["error"] = {"code": code, "message": message}
        return self._event("response.failed", response=response)
