"""The official `openai` SDK against thrifty in front of a mock OpenAI upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from thrifty.testing.mock_upstream import MockUpstream


def client(thrifty: RunningGateway, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="unused", max_retries=0, **kw)  # type: ignore[arg-type]


async def test_non_streaming_answer_and_ledger_row(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    resp = await client(thrifty).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hello there"}]
    )
    assert resp.choices[0].message.content == "echo: hello there"
    assert upstream.bodies[-1]["model"] == "gpt-4o-mini"  # the upstream id, not the alias
    [row] = thrifty.rows()
    assert row["requested_model"] == "gpt-test" and row["status"] == 200 and row["outcome"] == "ok"
    assert row["output_tokens"] == 3 and row["finish_reason"] == "stop"


async def test_stream_with_include_usage(thrifty: RunningGateway) -> None:
    stream = await client(thrifty).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "echo: one two three"
    assert usage is not None and usage.completion_tokens == 4
    [row] = thrifty.rows()
    assert row["stream"] and row["output_tokens"] == 4 and not row["usage_estimated"]


async def test_stream_without_include_usage_hides_the_usage_chunk(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    stream = await client(thrifty).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    # ...but thrifty asked the upstream for usage, so the ledger is exact.
    assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}
    assert thrifty.rows()[0]["output_tokens"] == 2


async def test_tools_response_format_and_unknown_fields_pass_through(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    resp = await client(thrifty).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "[tool] find it"}],
        tools=tools,  # type: ignore[arg-type]
        response_format={"type": "json_object"},
        extra_body={"some_future_field": {"x": 1}},
    )
    call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "x"}
    sent = upstream.bodies[-1]
    assert sent["tools"] == tools and sent["response_format"] == {"type": "json_object"}
    assert sent["some_future_field"] == {"x": 1}


async def test_429_then_success_is_retried(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    resp = await client(thrifty).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "[429 once] please"}]
    )
    assert resp.choices[0].message.content == "echo: please"
    assert upstream.calls["openai"] == 2
    [row] = thrifty.rows()
    assert json.loads(row["extra"])["retries"] == 1


async def test_upstream_error_keeps_status_and_message(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        await client(thrifty).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "[500 always]"}])
    assert "broken on purpose" in str(err.value)
    assert upstream.calls["openai"] == 3  # the first try and two retries
    [row] = thrifty.rows()
    assert row["status"] == 500 and row["outcome"] == "error" and row["cost_pico"] == 0


async def test_mid_stream_failure_ends_with_an_error_event_and_partial_usage(thrifty: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(
            thrifty.url + "/v1/chat/completions",
            json={"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "[cut] a b c d e f"}]},
        )
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_error"
    assert "[DONE]" not in events
    [row] = thrifty.rows()
    assert row["outcome"] == "partial" and row["usage_estimated"]
    assert row["input_tokens"] > 0 and row["output_tokens"] >= 2 and row["cost_pico"] > 0


async def test_models_health_and_ready(thrifty: RunningGateway) -> None:
    models = await client(thrifty).models.list()
    assert {m.id for m in models.data} == {"gpt-test", "claude-test"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(thrifty.url + "/healthz")).json() == {"status": "ok"}
        assert (await http.get(thrifty.url + "/readyz")).status_code == 200
