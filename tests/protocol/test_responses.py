"""Responses items to chat messages and back, and a chat stream told as Responses events."""

from __future__ import annotations

import pytest

from thrifty.errors import BadRequest
from thrifty.protocol.responses import chat_request, input_items, output_items
from thrifty.protocol.responses_stream import ChatToResponsesStream
from thrifty.types import SSEEvent


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    items = input_items([
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "let me look"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"type": "reasoning", "summary": []},
    ])
    chat = chat_request({"model": "m", "instructions": "be kind", "input": "", "max_output_tokens": 5}, [], items)
    assert chat["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "let me look", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert chat["max_completion_tokens"] == 5 and all(i["id"] for i in items)


def test_images_and_function_tools_translate_and_builtin_tools_are_refused() -> None:
    items = input_items([{"role": "user", "content": [{"type": "input_text", "text": "see"},
                                                      {"type": "input_image", "image_url": "https://x/y.png"}]}])
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
    chat = chat_request({"model": "m", "tools": [tool], "tool_choice": {"type": "function", "name": "f"}}, [], items)
    assert chat["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    with pytest.raises(BadRequest, match="file_search"):
        chat_request({"model": "m", "tools": [{"type": "file_search"}]}, [], items)


def test_output_items_of_a_chat_answer() -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": "hi", "reasoning_content": "hmm",
                                       "tool_calls": [{"id": "c9", "function": {"name": "f", "arguments": "{}"}}]},
                           "finish_reason": "tool_calls"}]}
    kinds = [(i["type"], i.get("call_id")) for i in output_items(answer)]
    assert kinds == [("reasoning", None), ("message", None), ("function_call", "c9")]


def _chunk(delta: dict[str, object], finish: str | None = None) -> SSEEvent:
    return SSEEvent(data={"id": "x", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_stream_events_keep_item_ids_and_order() -> None:
    t = ChatToResponsesStream({"model": "m"}, "resp_1", created_at=1)
    events = t.start()
    for chunk in [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "he"}), _chunk({"content": "y"}),
                  _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}),
                  _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
                  _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
                  _chunk({}, "tool_calls"),
                  SSEEvent(data={"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})]:
        events += t.feed(chunk)
    final = t.final()
    events.append(t.completed_event(final))
    kinds = [e.event for e in events]
    assert kinds == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]
    assert [e.data["sequence_number"] for e in events] == list(range(len(events)))  # type: ignore[index]
    message, call = final["output"]
    assert message["content"][0]["text"] == "hey" and call["arguments"] == '{"a": 1}' and call["call_id"] == "c1"
    assert events[2].data["item"]["id"] == message["id"]  # type: ignore[index]
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 4
