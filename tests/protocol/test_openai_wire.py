"""OpenAI chat completions: usage, streams collected into bodies, bodies replayed as streams."""

from __future__ import annotations

import copy
from typing import Any

import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from thrifty.protocol.openai import (
    collect_openai,
    finish_reason_of,
    replay_openai,
    usage_from_openai,
    usage_to_openai,
)
from thrifty.protocol.view import answer_text
from thrifty.types import SSEEvent, Usage

from .conftest import Upstream

ENVELOPE: dict[str, Any] = {
    "id": "chatcmpl-9x",
    "object": "chat.completion.chunk",
    "created": 1731000000,
    "model": "gpt-4o-mini-2024-07-18",
}


def chunk(delta: dict[str, Any] | None, finish: str | None = None, index: int = 0, **extra: Any) -> SSEEvent:
    choices = (
        [] if delta is None else [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return SSEEvent(data={**ENVELOPE, "system_fingerprint": "fp_0ba0d124f1", "choices": choices, **extra})


USAGE: dict[str, Any] = {
    "prompt_tokens": 1200,
    "completion_tokens": 40,
    "total_tokens": 1240,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}

#: The shape the live API streams: a role chunk with empty content, content pieces, tool calls
#: whose arguments arrive in fragments, a finish chunk, a usage chunk, then [DONE].
LIVE_STREAM = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Let me"}),
    chunk({"content": " check both."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Oslo"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage=USAGE),
    SSEEvent(data="[DONE]"),
]

COLLECTED: dict[str, Any] = {
    "id": "chatcmpl-9x",
    "object": "chat.completion",
    "created": 1731000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check both.",
                "refusal": None,
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
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "system_fingerprint": "fp_0ba0d124f1",
    "usage": USAGE,
}


def test_usage_splits_cached_tokens_out_of_prompt_tokens() -> None:
    usage = usage_from_openai(
        {**USAGE, "completion_tokens": 300, "completion_tokens_details": {"reasoning_tokens": 256}}
    )
    assert usage == Usage(input_tokens=176, cache_read_tokens=1024, output_tokens=300, reasoning_tokens=256)
    assert usage.total_input_tokens == 1200


def test_usage_absent_or_sparse() -> None:
    assert usage_from_openai(None) == Usage()
    assert usage_from_openai({"prompt_tokens": 7, "completion_tokens": 2}) == Usage(
        input_tokens=7, output_tokens=2
    )
    assert usage_from_openai({"prompt_tokens_details": None, "prompt_tokens": 5}).input_tokens == 5


def test_usage_reads_deepseek_cache_hits() -> None:
    usage = usage_from_openai({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "completion_tokens": 3})
    assert (usage.input_tokens, usage.cache_read_tokens) == (36, 64)


def test_usage_round_trip_and_sdk_shape() -> None:
    usage = Usage(input_tokens=176, cache_read_tokens=1024, output_tokens=300, reasoning_tokens=256)
    wire = usage_to_openai(usage)
    assert usage_from_openai(wire) == usage
    parsed = CompletionUsage.model_validate(wire)
    assert parsed.prompt_tokens == 1200 and parsed.total_tokens == 1500
    assert parsed.prompt_tokens_details is not None and parsed.prompt_tokens_details.cached_tokens == 1024


def test_collect_live_stream_with_tool_calls() -> None:
    body = collect_openai(LIVE_STREAM)
    assert body == COLLECTED
    ChatCompletion.model_validate(body)
    assert finish_reason_of(body) == "tool_calls"
    assert answer_text(body) == "Let me check both."


def test_collect_several_choices_interleaved() -> None:
    events = [
        chunk({"role": "assistant", "content": ""}, index=0),
        chunk({"role": "assistant", "content": ""}, index=1),
        chunk({"content": "Red"}, index=1),
        chunk({"content": "Blue"}, index=0),
        chunk({"content": " sky"}, index=0),
        chunk({}, "stop", index=1),
        chunk({}, "length", index=0),
    ]
    body = collect_openai(events)
    ChatCompletion.model_validate(body)
    assert [c["message"]["content"] for c in body["choices"]] == ["Blue sky", "Red"]
    assert [c["finish_reason"] for c in body["choices"]] == ["length", "stop"]
    assert "usage" not in body


def test_collect_logprobs_and_refusal() -> None:
    lp = [{"token": "No", "logprob": -0.1, "bytes": [78, 111], "top_logprobs": []}]
    events = [
        chunk({"role": "assistant", "content": None, "refusal": ""}),
        SSEEvent(
            data={
                **ENVELOPE,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"refusal": "No"},
                        "logprobs": {"content": None, "refusal": lp},
                        "finish_reason": None,
                    }
                ],
            }
        ),
        SSEEvent(
            data={
                **ENVELOPE,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"refusal": "pe."},
                        "logprobs": {"content": None, "refusal": lp},
                        "finish_reason": None,
                    }
                ],
            }
        ),
        chunk({}, "stop"),
    ]
    body = collect_openai(events)
    message = body["choices"][0]["message"]
    assert message["content"] is None and message["refusal"] == "Nope."
    assert body["choices"][0]["logprobs"] == {"content": None, "refusal": lp + lp}
    ChatCompletion.model_validate(body)


def test_collect_stream_cut_short_has_no_finish_reason() -> None:
    body = collect_openai(LIVE_STREAM[:5])
    assert finish_reason_of(body) is None
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"city": '


def _bodies() -> list[dict[str, Any]]:
    text = copy.deepcopy(COLLECTED)
    message = text["choices"][0]["message"]
    del message["tool_calls"]
    message["content"] = (
        "The capital of France is Paris. It has been the capital for centuries.\n\nAnything else?"
    )
    text["choices"][0]["finish_reason"] = "stop"
    tools_only = copy.deepcopy(COLLECTED)
    tools_only["choices"][0]["message"]["content"] = None
    two = copy.deepcopy(text)
    two["choices"].append({**copy.deepcopy(text["choices"][0]), "index": 1, "finish_reason": "length"})
    two["choices"][1]["message"]["content"] = "Paris."
    logprobs = copy.deepcopy(text)
    logprobs["choices"][0]["logprobs"] = {
        "content": [{"token": "The", "logprob": -0.01, "bytes": [84, 104, 101], "top_logprobs": []}],
        "refusal": None,
    }
    return [COLLECTED, text, tools_only, two, logprobs]


@pytest.mark.parametrize("body", _bodies(), ids=["text+tools", "text", "tools-only", "n=2", "logprobs"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_replay_then_collect_gives_the_same_body(body: dict[str, Any], include_usage: bool) -> None:
    events = replay_openai(body, include_usage)
    assert events[-1] == SSEEvent(data="[DONE]")
    chunks = [e.data for e in events[:-1]]
    for data in chunks:
        assert isinstance(data, dict)
        ChatCompletionChunk.model_validate(data)
    assert any(isinstance(d, dict) and d.get("usage") for d in chunks) == include_usage
    expected = copy.deepcopy(body)
    if not include_usage:
        del expected["usage"]
    assert collect_openai(events) == expected


def test_replay_splits_text_into_several_pieces() -> None:
    body = _bodies()[1]
    pieces = [
        e.data["choices"][0]["delta"]["content"]
        for e in replay_openai(body, False)
        if isinstance(e.data, dict) and e.data["choices"] and e.data["choices"][0]["delta"].get("content")
    ]
    assert len(pieces) > 3
    assert "".join(pieces) == answer_text(body)


def test_text_of_and_finish_reason_of_without_choices() -> None:
    assert answer_text({}) == "" and finish_reason_of({}) is None
    assert (
        answer_text(
            {
                "choices": [
                    {"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}
                ]
            }
        )
        == "ab"
    )


async def test_openai_sdk_accumulates_a_replay_into_the_same_body(upstream: Upstream) -> None:
    body = COLLECTED
    upstream.events = replay_openai(body, include_usage=True)
    client = openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="test", max_retries=0)
    async with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather?"}],
        stream_options={"include_usage": True},
    ) as stream:
        final = await stream.get_final_completion()
    await client.close()
    message = final.choices[0].message
    assert message.content == "Let me check both."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_a", "weather", '{"city": "Paris"}'),
        ("call_b", "weather", '{"city": "Oslo"}'),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.model_dump(exclude_none=True) == USAGE
    assert (final.id, final.model, final.system_fingerprint) == (
        body["id"],
        body["model"],
        body["system_fingerprint"],
    )


async def test_openai_sdk_iterates_raw_chunks_of_a_replay(upstream: Upstream) -> None:
    upstream.events = replay_openai(_bodies()[1], include_usage=False)
    client = openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "?"}], stream=True
    )
    text = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    await client.close()
    assert "".join(text) == answer_text(_bodies()[1])


def test_collect_tool_calls_sent_whole_without_index() -> None:
    # some OpenAI-compatible servers send each call whole, in one chunk, with no index
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk(
            {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]}
        ),
        chunk(
            {
                "tool_calls": [
                    {"id": "c2", "type": "function", "function": {"name": "b", "arguments": '{"x":1}'}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
    ]
    calls = collect_openai(events)["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("c1", "a", "{}"),
        ("c2", "b", '{"x":1}'),
    ]
