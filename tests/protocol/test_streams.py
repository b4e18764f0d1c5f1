"""Streams translated event by event: collected, they equal the translated complete response,
and the official SDKs read them like a live stream."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from thrifty.protocol.anthropic import collect_anthropic, replay_anthropic
from thrifty.protocol.openai import collect_openai, replay_openai, usage_from_openai, usage_to_openai
from thrifty.protocol.translate import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_response_to_openai,
    openai_response_to_anthropic,
)
from thrifty.types import SSEEvent, Usage

from .conftest import Upstream, payload

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)

ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_01ABC",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [
        {"type": "thinking", "thinking": "Two cities, two calls.", "signature": "c2ln"},
        {"type": "text", "text": "I will look up both cities for you right away."},
        {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris", "unit": "c"}},
        {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {"city": "Oslo", "unit": "c"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2000,
        "output_tokens": 61,
    },
}

OPENAI_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-XYZ",
    "object": "chat.completion",
    "created": 1731000000,
    "model": "gpt-4.1-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Looking up both cities, one moment please.",
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
    "usage": {
        "prompt_tokens": 900,
        "completion_tokens": 33,
        "total_tokens": 933,
        "prompt_tokens_details": {"cached_tokens": 768},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def to_openai(events: list[SSEEvent], include_usage: bool) -> tuple[AnthropicToOpenAIStream, list[SSEEvent]]:
    stream = AnthropicToOpenAIStream(include_usage, created=1731000000)
    out = [chunk for event in events for chunk in stream.feed(event)]
    return stream, out + stream.finish()


def to_anthropic(events: list[SSEEvent]) -> tuple[OpenAIToAnthropicStream, list[SSEEvent]]:
    stream = OpenAIToAnthropicStream()
    out = [e for event in events for e in stream.feed(event)]
    return stream, out + stream.finish()


def _plain_message() -> dict[str, Any]:
    plain = copy.deepcopy(ANTHROPIC_MESSAGE)
    plain["content"] = [plain["content"][1]]
    plain["stop_reason"] = "max_tokens"
    return plain


@pytest.mark.parametrize("message", [ANTHROPIC_MESSAGE, _plain_message()], ids=["tools", "text"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_anthropic_stream_to_openai_collects_to_the_translated_response(
    message: dict[str, Any], include_usage: bool
) -> None:
    stream, out = to_openai(replay_anthropic(message), include_usage)
    assert out[-1] == SSEEvent(data="[DONE]")
    for event in out[:-1]:
        ChatCompletionChunk.model_validate(event.data)
    expected = anthropic_response_to_openai(message, created=1731000000)
    if not include_usage:
        del expected["usage"]
    collected = collect_openai(out)
    ChatCompletion.model_validate(collected)
    assert collected == expected
    assert stream.complete
    assert stream.usage == Usage(input_tokens=30, cache_read_tokens=2000, output_tokens=61)


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_to_anthropic_collects_to_the_translated_response(include_usage: bool) -> None:
    stream, out = to_anthropic(replay_openai(OPENAI_COMPLETION, include_usage))
    for event in out:
        assert isinstance(event.data, dict) and event.event == event.data["type"]
        if event.event != "ping":  # the SDK skips pings before parsing
            STREAM_EVENT.validate_python(event.data)
    assert [e.event for e in out[:2]] == ["message_start", "ping"]
    assert [e.event for e in out[-2:]] == ["message_delta", "message_stop"]
    expected = openai_response_to_anthropic(OPENAI_COMPLETION)
    if not include_usage:
        expected["usage"] = openai_response_to_anthropic({"usage": None})["usage"]
    collected = collect_anthropic(out)
    Message.model_validate(collected)
    assert collected == expected
    assert stream.complete


def test_block_indexes_are_consecutive_when_there_is_no_text() -> None:
    body = copy.deepcopy(OPENAI_COMPLETION)
    body["choices"][0]["message"]["content"] = None
    _, out = to_anthropic(replay_openai(body, True))
    starts = [
        (payload(e)["index"], payload(e)["content_block"]["type"])
        for e in out
        if e.event == "content_block_start"
    ]
    assert starts == [(0, "tool_use"), (1, "tool_use")]
    stops = [payload(e)["index"] for e in out if e.event == "content_block_stop"]
    assert stops == [0, 1]


def test_streams_cut_short_owe_no_closing_events() -> None:
    a2o, out = to_openai(replay_anthropic(ANTHROPIC_MESSAGE)[:8], include_usage=True)
    assert not a2o.complete and SSEEvent(data="[DONE]") not in out
    o2a, out2 = to_anthropic(replay_openai(OPENAI_COMPLETION, True)[:4])
    assert not o2a.complete and all(e.event != "message_stop" for e in out2)


def test_upstream_ending_after_finish_without_done_still_closes() -> None:
    events = replay_openai(OPENAI_COMPLETION, True)[:-1]  # no [DONE]
    stream, out = to_anthropic(events)
    assert stream.complete and out[-1].event == "message_stop"
    assert payload(out[-2])["usage"]["input_tokens"] == 132


def test_error_events_translate_to_the_other_shape() -> None:
    overloaded = SSEEvent(
        event="error", data={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    _, out = to_openai([*replay_anthropic(ANTHROPIC_MESSAGE)[:5], overloaded], include_usage=True)
    assert out[-1].data == {
        "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded_error"}
    }
    failing = SSEEvent(
        data={"error": {"message": "upstream died", "type": "server_error", "param": None, "code": None}}
    )
    _, out2 = to_anthropic([*replay_openai(OPENAI_COMPLETION, True)[:3], failing])
    assert out2[-1] == SSEEvent(
        event="error", data={"type": "error", "error": {"type": "api_error", "message": "upstream died"}}
    )


async def test_openai_sdk_reads_a_translated_anthropic_stream(upstream: Upstream) -> None:
    _, upstream.events = to_openai(replay_anthropic(ANTHROPIC_MESSAGE), include_usage=True)
    client = openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="test", max_retries=0)
    async with client.chat.completions.stream(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "?"}]
    ) as s:
        final = await s.get_final_completion()
    await client.close()
    expected = anthropic_response_to_openai(ANTHROPIC_MESSAGE, created=1731000000)
    assert final.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert [c.function.arguments for c in final.choices[0].message.tool_calls or []] == [
        '{"city": "Paris", "unit": "c"}',
        '{"city": "Oslo", "unit": "c"}',
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.prompt_tokens == 2030


async def test_openai_sdk_raises_on_a_translated_error_event(upstream: Upstream) -> None:
    overloaded = SSEEvent(
        event="error", data={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    _, upstream.events = to_openai([*replay_anthropic(ANTHROPIC_MESSAGE)[:5], overloaded], include_usage=True)
    client = openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "?"}], stream=True
    )
    with pytest.raises(openai.APIError, match="Overloaded"):
        async for _ in stream:
            pass
    await client.close()


async def test_anthropic_sdk_reads_a_translated_openai_stream(upstream: Upstream) -> None:
    _, upstream.events = to_anthropic(replay_openai(OPENAI_COMPLETION, True))
    client = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="test", max_retries=0)
    async with client.messages.stream(
        model="gpt-4.1-mini", max_tokens=50, messages=[{"role": "user", "content": "?"}]
    ) as s:
        text = [t async for t in s.text_stream]
        final = await s.get_final_message()
    await client.close()
    assert "".join(text) == "Looking up both cities, one moment please."
    expected = Message.model_validate(openai_response_to_anthropic(OPENAI_COMPLETION))
    assert final.model_dump(exclude_none=True) == expected.model_dump(exclude_none=True)
    assert final.usage.input_tokens == 132 and final.usage.cache_read_input_tokens == 768


async def test_anthropic_sdk_raises_on_a_translated_error_event(upstream: Upstream) -> None:
    failing = SSEEvent(
        data={"error": {"message": "upstream died", "type": "server_error", "param": None, "code": None}}
    )
    _, upstream.events = to_anthropic([*replay_openai(OPENAI_COMPLETION, True)[:3], failing])
    client = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="test", max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="upstream died"):
        async with client.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "?"}]
        ) as s:
            await s.get_final_message()
    await client.close()


def test_tool_calls_without_index_become_separate_blocks() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return SSEEvent(
            data={
                "id": "chatcmpl-g",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gemini",
                "choices": [choice],
            }
        )

    events = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}
                ],
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {"id": "c2", "type": "function", "function": {"name": "b", "arguments": '{"x": 1}'}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        SSEEvent(data="[DONE]"),
    ]
    _, out = to_anthropic(events)
    message = collect_anthropic(out)
    assert [(b["id"], b["name"], b["input"]) for b in message["content"]] == [
        ("c1", "a", {}),
        ("c2", "b", {"x": 1}),
    ]
    assert message["stop_reason"] == "tool_use"


def _random_completion(rng: random.Random) -> dict[str, Any]:
    words = ["Paris", "weather", "naïve", "你好", "🌍", "\n\n", "  ", "x", "the", "{json}"]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "arguments": json.dumps({"q": rng.choice(words), "n": rng.randint(0, 9)}, ensure_ascii=False),
            },
        }
        for i in range(rng.randint(0, 3))
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    prompt, cached = rng.randint(10, 5000), rng.randint(0, 9)
    return {
        "id": f"chatcmpl-{rng.randint(0, 10**6)}",
        "object": "chat.completion",
        "created": 1731000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if calls else rng.choice(["stop", "length"]),
            }
        ],
        "usage": usage_to_openai(
            usage_from_openai(
                {
                    "prompt_tokens": prompt,
                    "completion_tokens": rng.randint(1, 500),
                    "prompt_tokens_details": {"cached_tokens": cached},
                }
            )
        ),
    }


def test_random_answers_survive_every_path_between_protocols() -> None:
    """Complete and streamed, in both directions, every path gives the same answer."""
    rng = random.Random(11)
    for _ in range(60):
        completion = _random_completion(rng)
        message = openai_response_to_anthropic(completion)
        Message.model_validate(message)
        # OpenAI stream -> Anthropic stream -> collected == complete translation
        _, out = to_anthropic(replay_openai(completion, True))
        assert collect_anthropic(out) == message
        # Anthropic stream -> OpenAI stream -> collected == complete translation == the original
        _, back = to_openai(replay_anthropic(message), include_usage=True)
        assert collect_openai(back) == anthropic_response_to_openai(message, created=1731000000) == completion
