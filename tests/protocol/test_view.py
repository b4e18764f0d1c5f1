"""Reading answers out of reply bodies: tool calls, so that a cascade's judge sees them."""

from __future__ import annotations

from thrifty.protocol.view import answer_text, answer_with_calls, tool_calls_text

OPENAI_CALL = {
    "choices": [{
        "message": {
            "role": "assistant", "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"unit": "c", "city": "Paris"}'}},
                {"id": "b", "type": "function", "function": {"name": "note", "arguments": "not\njson"}},
            ],
        },
        "finish_reason": "tool_calls",
    }]
}  # fmt: skip
ANTHROPIC_CALL = {
    "content": [
        {"type": "text", "text": "Let me check the weather."},
        {"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
    ]
}


def test_a_tool_call_reads_the_same_in_both_protocols_whatever_the_key_order() -> None:
    assert tool_calls_text(OPENAI_CALL).splitlines()[0] == tool_calls_text(ANTHROPIC_CALL)
    assert tool_calls_text(ANTHROPIC_CALL) == 'get_weather({"city": "Paris", "unit": "c"})'
    assert tool_calls_text(OPENAI_CALL).splitlines()[1] == "note(not json)"  # arguments that are not JSON


def test_an_answer_with_calls_keeps_its_text_and_marks_each_call() -> None:
    assert answer_text(OPENAI_CALL) == ""  # what a judge would have seen before
    assert answer_with_calls(OPENAI_CALL).splitlines() == [
        '[tool call] get_weather({"city": "Paris", "unit": "c"})',
        "[tool call] note(not json)",
    ]
    assert answer_with_calls(ANTHROPIC_CALL) == (
        'Let me check the weather.\n[tool call] get_weather({"city": "Paris", "unit": "c"})'
    )
    assert answer_with_calls({"choices": [{"message": {"content": "Paris."}}]}) == "Paris."
    assert answer_with_calls(None) == "" and tool_calls_text({"choices": "junk"}) == ""
