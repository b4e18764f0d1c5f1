"""Requests and complete responses translated between OpenAI and Anthropic, checked against the SDKs' types."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from anthropic.types import Message, MessageCreateParams
from openai.types.chat import ChatCompletion, CompletionCreateParams
from pydantic import TypeAdapter

from thrifty.protocol.translate import (
    TranslationError,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)

ANTHROPIC_PARAMS: TypeAdapter[Any] = TypeAdapter(MessageCreateParams)
OPENAI_PARAMS: TypeAdapter[Any] = TypeAdapter(CompletionCreateParams)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

OPENAI_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these pictures, and the weather in Paris and Oslo?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18 C, sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "4 C, rain"}]},
        {"role": "user", "content": "And tomorrow?"},
    ],
    "max_completion_tokens": 300,
    "stop": "END",
    "temperature": 1.4,
    "top_p": 0.9,
    "tools": [WEATHER],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "user": "user-42",
    "stream": True,
    "seed": 7,
}


def test_openai_request_to_anthropic() -> None:
    out = openai_request_to_anthropic(OPENAI_REQUEST)
    ANTHROPIC_PARAMS.validate_python(out)
    assert out["system"] == "You are terse.\n\nUse metric units."
    assert out["max_tokens"] == 300 and out["stop_sequences"] == ["END"]
    assert out["temperature"] == 1.0 and out["top_p"] == 0.9
    assert out["tools"] == [
        {
            "name": "weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["metadata"] == {"user_id": "user-42"} and out["stream"] is True
    assert "seed" not in out
    user, assistant, results = out["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert user["content"][2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_b", "name": "weather", "input": {"city": "Oslo"}},
        ],
    }
    # both tool results and the next user text share one user turn, results first
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "18 C, sunny"},
            {
                "type": "tool_result",
                "tool_use_id": "call_b",
                "content": [{"type": "text", "text": "4 C, rain"}],
            },
            {"type": "text", "text": "And tomorrow?"},
        ],
    }


def test_openai_request_defaults_max_tokens_and_leaves_auto_tool_choice_implicit() -> None:
    out = openai_request_to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER]}
    )
    assert (
        out["max_tokens"] == 4096 and "tool_choice" not in out and "stream" not in out and "system" not in out
    )
    assert openai_request_to_anthropic({"model": "m", "messages": [], "max_tokens": 12})["max_tokens"] == 12
    neutral = openai_request_to_anthropic({"model": "m", "messages": [], "temperature": 0.3, "top_p": 1})
    assert neutral["temperature"] == 0.3 and "top_p" not in neutral


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", None),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "weather"}}, {"type": "tool", "name": "weather"}),
    ],
)
def test_tool_choice_to_anthropic(choice: Any, expected: dict[str, Any] | None) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER],
        "tool_choice": choice,
    }
    out = openai_request_to_anthropic(body)
    ANTHROPIC_PARAMS.validate_python(out)
    assert out.get("tool_choice") == expected
    back = anthropic_request_to_openai(out)
    assert back["tool_choice"] == choice


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
          "additionalProperties": False}


@pytest.mark.parametrize(
    ("response_format", "output_format"),
    [
        ({"type": "json_object"}, {"type": "json_schema", "schema": {"type": "object"}}),
        ({"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}},
         {"type": "json_schema", "schema": SCHEMA}),
    ],
    ids=["json_object", "json_schema"],
)
def test_response_format_becomes_native_structured_output(
    response_format: dict[str, Any], output_format: dict[str, Any]
) -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}]}
    out = openai_request_to_anthropic({**body, "response_format": response_format})
    assert out["system"] == "Be brief." and out["output_config"] == {"format": output_format}


def test_output_config_format_becomes_a_strict_json_schema() -> None:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}
    expected = {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA, "strict": True}}
    assert anthropic_request_to_openai(body)["response_format"] == expected
    legacy = {**body, "output_config": None, "output_format": {"type": "json_schema", "schema": SCHEMA}}
    assert anthropic_request_to_openai(legacy)["response_format"] == expected


def test_legacy_functions_become_tools_and_function_messages_tool_results() -> None:
    body = {
        "model": "m",
        "functions": [{"name": "lookup", "parameters": {"type": "object"}}],
        "function_call": {"name": "lookup"},
        "messages": [
            {"role": "user", "content": "find x"},
            {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}},
            {"role": "function", "name": "lookup", "content": "found"},
        ],
    }
    out = openai_request_to_anthropic(body)
    assert out["tools"] == [{"name": "lookup", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "tool", "name": "lookup"}
    assert out["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_legacy_1", "name": "lookup",
                                           "input": {"q": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_legacy_1", "content": "found"}]},
    ]
    ANTHROPIC_PARAMS.validate_python(out)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"functions": [{"name": "f"}], "tools": [WEATHER]}, "'functions' and 'tools'"),
    ],
)
def test_openai_features_without_an_anthropic_equivalent_are_refused_by_name(extra: dict[str, Any], named: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(TranslationError, match=re.escape(named)):
        openai_request_to_anthropic(body)


@pytest.mark.parametrize("extra, named", [({"mcp_servers": [{"type": "url", "url": "https://m", "name": "m"}]},
                                           "mcp_servers"), ({"container": "c1"}, "container")])
def test_anthropic_features_without_an_openai_equivalent_are_refused_by_name(extra: dict[str, Any], named: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(TranslationError, match=named):
        anthropic_request_to_openai(body)


def test_the_default_output_cap_is_a_parameter() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert openai_request_to_anthropic(body)["max_tokens"] == 4096
    assert openai_request_to_anthropic(body, default_max_tokens=32000)["max_tokens"] == 32000


def test_openai_request_keeps_cache_control_on_system_parts() -> None:
    system = {
        "role": "system",
        "content": [{"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}}],
    }
    out = openai_request_to_anthropic({"model": "m", "messages": [system, {"role": "user", "content": "q"}]})
    assert out["system"] == [{"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}}]
    ANTHROPIC_PARAMS.validate_python(out)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2},
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        },
        {"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]},
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
                }
            ],
        },
    ],
    ids=["n=2", "audio", "function-role", "file-url"],
)
def test_openai_request_that_cannot_be_translated(body: dict[str, Any]) -> None:
    with pytest.raises(TranslationError):
        openai_request_to_anthropic(body)


def test_invalid_tool_arguments_are_kept() -> None:
    body = copy.deepcopy(OPENAI_REQUEST)
    body["messages"][3]["tool_calls"][0]["function"]["arguments"] = '{"city": "Par'
    out = openai_request_to_anthropic(body)
    assert out["messages"][1]["content"][0]["input"] == {"arguments": '{"city": "Par'}


ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You are a helpful assistant."},
        {"type": "text", "text": "Here is the manual.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?", "cache_control": {"type": "ephemeral"}}
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Call the tool.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "18 C"}],
                },
                {"type": "text", "text": "Thanks. And this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        },
    ],
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "top_k": 40,
    "tools": [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "metadata": {"user_id": "u-1"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "stream": True,
}


def test_anthropic_request_to_openai() -> None:
    out = anthropic_request_to_openai(ANTHROPIC_REQUEST)
    OPENAI_PARAMS.validate_python(out)
    assert out["messages"] == [
        {"role": "system", "content": "You are a helpful assistant.\nHere is the manual."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks. And this picture?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
    ]
    assert out["max_tokens"] == 1024 and out["stop"] == ["END"] and out["temperature"] == 0.2
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather",
                "parameters": WEATHER["function"]["parameters"],
            },
        }
    ]
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False
    assert out["user"] == "u-1"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert "top_k" not in out and "thinking" not in out


def test_anthropic_request_options() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    out = anthropic_request_to_openai(body, max_tokens_field="max_completion_tokens")
    assert out == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 5,
        "stream": False,
    }
    error = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}],
    }
    assert anthropic_request_to_openai({**body, "messages": [error]})["messages"] == [
        {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}
    ]
    with pytest.raises(TranslationError):
        anthropic_request_to_openai(
            {**body, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
        )


def test_request_round_trip_openai_anthropic_openai() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": OPENAI_REQUEST["messages"][3]["tool_calls"][:1],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "18 C, sunny"},
            {"role": "assistant", "content": "It is sunny."},
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 100,
        "stop": ["END"],
        "tools": [WEATHER],
        "tool_choice": "auto",
    }
    assert anthropic_request_to_openai(openai_request_to_anthropic(body)) == body


OPENAI_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1731000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 2000,
        "completion_tokens": 20,
        "total_tokens": 2020,
        "prompt_tokens_details": {"cached_tokens": 1536},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def test_openai_response_to_anthropic() -> None:
    out = openai_response_to_anthropic(OPENAI_RESPONSE)
    Message.model_validate(out)
    assert out["id"] == "msg_abc" and out["model"] == "gpt-4o-mini" and out["stop_reason"] == "tool_use"
    assert out["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
    ]
    assert out["usage"]["input_tokens"] == 464 and out["usage"]["cache_read_input_tokens"] == 1536
    assert out["usage"]["output_tokens"] == 20


def test_response_round_trip() -> None:
    back = anthropic_response_to_openai(openai_response_to_anthropic(OPENAI_RESPONSE), created=1731000000)
    ChatCompletion.model_validate(back)
    assert back == OPENAI_RESPONSE


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, finish_reason: str) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop_reason,
        "stop_sequence": "END" if stop_reason == "stop_sequence" else None,
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 7,
            "cache_creation_input_tokens": 11,
            "output_tokens": 2,
        },
    }
    out = anthropic_response_to_openai(message)
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["finish_reason"] == finish_reason
    assert out["id"] == "chatcmpl-1"
    assert out["usage"]["prompt_tokens"] == 21 and out["usage"]["prompt_tokens_details"]["cached_tokens"] == 7
    if stop_reason != "stop_sequence":
        Message.model_validate(openai_response_to_anthropic(out))
        assert openai_response_to_anthropic(out)["stop_reason"] == stop_reason


def test_anthropic_response_with_only_tools_has_null_content() -> None:
    message = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Zürich"}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    out = anthropic_response_to_openai(message)
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"city": "Zürich"}'


def test_a_system_turn_inside_an_anthropic_conversation_stays_a_system_message() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"}, {"role": "system", "content": [{"type": "text", "text": "agents: a, b"}]}]}
    assert anthropic_request_to_openai(body)["messages"] == [
        {"role": "user", "content": "hi"}, {"role": "system", "content": "agents: a, b"}]
