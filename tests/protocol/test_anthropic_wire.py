"""Anthropic Messages: usage, streams collected into bodies, bodies replayed as streams."""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types import Usage as AnthropicUsage
from pydantic import TypeAdapter

from thrifty.protocol.anthropic import (
    collect_anthropic,
    finish_reason_of,
    replay_anthropic,
    usage_from_anthropic,
    usage_to_anthropic,
)
from thrifty.protocol.view import answer_text
from thrifty.types import SSEEvent, Usage

from .conftest import Upstream, payload

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def ev(kind: str, **fields: Any) -> SSEEvent:
    return SSEEvent(event=kind, data={"type": kind, **fields})


def delta(index: int, **d: Any) -> SSEEvent:
    return ev("content_block_delta", index=index, delta=d)


START_USAGE: dict[str, Any] = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 4096,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2048},
    "output_tokens": 1,
    "service_tier": "standard",
}

#: The shape the live API streams: thinking with its signature, text, a tool call whose JSON
#: input arrives in fragments, and the final usage in message_delta.
LIVE_STREAM = [
    ev(
        "message_start",
        message={
            "id": "msg_01XYZ",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": START_USAGE,
        },
    ),
    ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, type="thinking_delta", thinking="The user wants"),
    delta(0, type="thinking_delta", thinking=" the weather."),
    delta(0, type="signature_delta", signature="EqQBCkYIBxgCKkA"),
    ev("content_block_stop", index=0),
    ev("ping"),
    ev("content_block_start", index=1, content_block={"type": "text", "text": ""}),
    delta(1, type="text_delta", text="Checking"),
    delta(1, type="text_delta", text=" now."),
    ev("content_block_stop", index=1),
    ev(
        "content_block_start",
        index=2,
        content_block={"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {}},
    ),
    delta(2, type="input_json_delta", partial_json=""),
    delta(2, type="input_json_delta", partial_json='{"city": "Pa'),
    delta(2, type="input_json_delta", partial_json='ris", "days": 3}'),
    ev("content_block_stop", index=2),
    ev(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": 87},
    ),
    ev("message_stop"),
]

COLLECTED: dict[str, Any] = {
    "id": "msg_01XYZ",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCkYIBxgCKkA"},
        {"type": "text", "text": "Checking now."},
        {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris", "days": 3}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {**START_USAGE, "output_tokens": 87},
}


def test_usage_splits_cache_writes_by_lifetime() -> None:
    usage = usage_from_anthropic(COLLECTED["usage"])
    assert usage == Usage(
        input_tokens=12,
        cache_read_tokens=4096,
        cache_write_tokens=0,
        cache_write_1h_tokens=2048,
        output_tokens=87,
    )


def test_usage_without_breakdown_counts_writes_as_five_minute() -> None:
    usage = usage_from_anthropic({"input_tokens": 3, "cache_creation_input_tokens": 500, "output_tokens": 9})
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (500, 0)
    assert usage_from_anthropic(None) == Usage()
    assert (
        usage_from_anthropic(
            {"input_tokens": 3, "cache_creation_input_tokens": None, "output_tokens": 1}
        ).total_input_tokens
        == 3
    )


def test_usage_round_trip_and_sdk_shape() -> None:
    usage = Usage(
        input_tokens=5, cache_read_tokens=10, cache_write_tokens=20, cache_write_1h_tokens=30, output_tokens=7
    )
    wire = usage_to_anthropic(usage)
    assert usage_from_anthropic(wire) == usage
    parsed = AnthropicUsage.model_validate(wire)
    assert parsed.cache_creation_input_tokens == 50


def test_collect_live_stream() -> None:
    body = collect_anthropic(LIVE_STREAM)
    assert body == COLLECTED
    Message.model_validate(body)
    assert finish_reason_of(body) == "tool_use"
    assert answer_text(body) == "Checking now."


def test_collect_stream_cut_short() -> None:
    body = collect_anthropic(LIVE_STREAM[:14])
    assert finish_reason_of(body) is None
    assert body["content"][2]["input"] == {}  # the JSON never completed
    assert body["usage"]["output_tokens"] == 1


def test_message_delta_usage_overrides_start_usage() -> None:
    events = [
        *LIVE_STREAM[:-2],
        ev(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"input_tokens": 15, "output_tokens": 90, "cache_read_input_tokens": None},
        ),
    ]
    body = collect_anthropic(events)
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (15, 90)
    assert body["usage"]["cache_read_input_tokens"] == 4096


def _bodies() -> list[dict[str, Any]]:
    plain = {
        **copy.deepcopy(COLLECTED),
        "content": [
            {"type": "text", "text": "Paris is the capital of France, and has been for a long time."}
        ],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 15,
        },
    }
    stopped = {**copy.deepcopy(plain), "stop_reason": "stop_sequence", "stop_sequence": "\n\nHuman:"}
    redacted = copy.deepcopy(COLLECTED)
    redacted["content"].insert(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"})
    cited = copy.deepcopy(plain)
    cited["content"][0]["citations"] = [
        {
            "type": "char_location",
            "cited_text": "Paris is the capital",
            "document_index": 0,
            "document_title": "France",
            "start_char_index": 0,
            "end_char_index": 20,
        }
    ]
    empty_tool = copy.deepcopy(COLLECTED)
    empty_tool["content"][2]["input"] = {}
    return [COLLECTED, plain, stopped, redacted, cited, empty_tool]


@pytest.mark.parametrize(
    "body", _bodies(), ids=["thinking+tools", "plain", "stop-sequence", "redacted", "citations", "no-input"]
)
def test_replay_then_collect_gives_the_same_body(body: dict[str, Any]) -> None:
    events = replay_anthropic(body)
    for event in events:
        assert isinstance(event.data, dict) and event.event == event.data["type"]
        if event.event != "ping":  # the SDK skips pings before parsing
            STREAM_EVENT.validate_python(event.data)
    assert [e.event for e in events[:2]] == ["message_start", "ping"]
    assert [e.event for e in events[-2:]] == ["message_delta", "message_stop"]
    start_usage = payload(events[0])["message"]["usage"]
    assert start_usage["input_tokens"] == body["usage"]["input_tokens"]
    assert payload(events[-2])["usage"]["output_tokens"] == body["usage"]["output_tokens"]
    assert collect_anthropic(events) == body


def test_replay_streams_text_in_several_deltas() -> None:
    events = replay_anthropic(_bodies()[1])
    texts = [
        e.data["delta"]["text"]
        for e in events
        if isinstance(e.data, dict) and e.data["type"] == "content_block_delta"
    ]
    assert len(texts) > 2 and "".join(texts) == answer_text(_bodies()[1])


async def test_anthropic_sdk_accumulates_a_replay_into_the_same_body(upstream: Upstream) -> None:
    upstream.events = replay_anthropic(COLLECTED)
    client = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="test", max_retries=0)
    async with client.messages.stream(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        final = await stream.get_final_message()
    await client.close()
    assert final.model_dump(exclude_none=True) == Message.model_validate(COLLECTED).model_dump(
        exclude_none=True
    )


async def test_anthropic_sdk_accumulates_the_live_stream_as_we_do(upstream: Upstream) -> None:
    upstream.events = LIVE_STREAM
    client = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="test", max_retries=0)
    async with client.messages.stream(
        model="m", max_tokens=100, messages=[{"role": "user", "content": "?"}]
    ) as stream:
        final = await stream.get_final_message()
    await client.close()
    assert final.model_dump(exclude_none=True) == Message.model_validate(
        collect_anthropic(LIVE_STREAM)
    ).model_dump(exclude_none=True)
