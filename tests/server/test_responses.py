"""The official `openai` SDK's Responses API (`client.responses.*`) against thrifty, in front
of the mock upstream speaking Anthropic Messages or chat completions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(gw: RunningGateway, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, **kw)


async def test_three_turn_tool_conversation_against_anthropic(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    """Turn 1 calls a tool, turn 2 returns its output, turn 3 asks again: the Anthropic
    upstream sees the whole conversation each time, each follow-up is sent the moment the
    previous answer is read (to another replica on the same store), and the ledger holds
    exactly one row per response."""
    config = mock_config(upstream, tmp_path)
    first, second = await start_gateway(config), await start_gateway(config)
    one = await client(first).responses.create(
        model="claude-test", instructions="Be brief.", input="Weather in Paris? [tool]", tools=[WEATHER])
    [call] = one.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "toolu_mock1"
    assert json.loads(call.arguments) == {"q": "x"}
    sent = upstream.bodies[-1]
    assert sent["system"] == "Be brief." and sent["tools"][0]["name"] == "get_weather"
    assert sent["messages"] == [{"role": "user", "content": "Weather in Paris? [tool]"}]

    two = await client(second).responses.create(  # another replica, at once
        model="claude-test", previous_response_id=one.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert two.output_text == "result: sunny, 21C"
    assert upstream.bodies[-1]["messages"] == [
        {"role": "user", "content": "Weather in Paris? [tool]"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_mock1", "name": "get_weather",
                                           "input": {"q": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock1", "content": "sunny, 21C"}]},
    ]
    assert "system" not in upstream.bodies[-1]  # instructions do not carry over, as on OpenAI

    three = await client(first).responses.create(
        model="claude-test", previous_response_id=two.id, tools=[WEATHER], input="And London? [tool]")
    [call3] = three.output
    assert call3.type == "function_call" and call3.call_id == "toolu_mock2"
    assert upstream.bodies[-1]["messages"][2:] == [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock1", "content": "sunny, 21C"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "result: sunny, 21C"}]},
        {"role": "user", "content": "And London? [tool]"},
    ]
    assert upstream.calls["anthropic"] == 3
    second.rows()  # flush the other replica's writer; both write to the one ledger
    rows = first.rows()
    assert len(rows) == 3
    assert all(r["outcome"] == "ok" and json.loads(r["extra"])["endpoint"] == "responses" for r in rows)
    assert {json.loads(r["extra"])["response_id"] for r in rows} == {one.id, two.id, three.id}
    assert all(r["cost_pico"] > 0 for r in rows)


async def test_stream_of_a_tool_conversation_against_anthropic(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    c = client(thrifty)
    async with c.responses.stream(model="claude-test", input="Weather? [tool]", tools=[WEATHER]) as stream:
        kinds = [event.type async for event in stream]
        first = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    [call] = first.output
    assert call.type == "function_call" and call.call_id == "toolu_mock1" and json.loads(call.arguments) == {"q": "x"}
    # the follow-up is accepted the moment the stream has ended: it was stored before its last event
    async with c.responses.stream(model="claude-test", previous_response_id=first.id,
                                  input=[{"type": "function_call_output", "call_id": "toolu_mock1",
                                          "output": "rain"}]) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        second = await stream.get_final_response()
    assert "".join(deltas) == "result: rain" == second.output_text
    assert second.usage is not None and second.usage.output_tokens == 2
    assert upstream.bodies[-1]["stream"] is True and len(upstream.bodies[-1]["messages"]) == 3
    rows = thrifty.rows()
    assert len(rows) == 2 and all(r["stream"] and r["outcome"] == "ok" and not r["usage_estimated"] for r in rows)
    stored = await c.responses.retrieve(second.id)
    assert stored.output_text == "result: rain" and stored.previous_response_id == first.id


async def test_chat_completions_upstream_reasoning_and_structured_output(
    thrifty: RunningGateway, upstream: MockUpstream
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    resp = await client(thrifty).responses.create(
        model="gpt-test", input=[{"role": "developer", "content": "dev note"},
                                 {"role": "user", "content": [{"type": "input_text", "text": "hi [reason 40]"}]}],
        reasoning={"effort": "low"}, max_output_tokens=300, temperature=0.2,
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    sent = upstream.bodies[-1]
    assert sent["reasoning_effort"] == "low" and sent["max_completion_tokens"] == 300 and sent["temperature"] == 0.2
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    assert sent["messages"] == [{"role": "developer", "content": "dev note"}, {"role": "user", "content": "hi [reason 40]"}]
    assert resp.output_text == "echo: hi" and resp.status == "completed"
    assert resp.usage is not None and resp.usage.output_tokens_details.reasoning_tokens == 40
    assert resp.text.format.type == "json_schema" and resp.max_output_tokens == 300
    [row] = thrifty.rows()
    assert row["reasoning_tokens"] == 40 and row["output_tokens"] == 42
    # 42 output tokens at $0.60/M, reasoning included (in picodollars: $0.60/M = 600,000 per token)
    assert row["cost_pico"] == row["input_tokens"] * 150_000 + 42 * 600_000


async def test_retrieve_delete_input_items_and_tenants(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    sha = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("key-a", "key-b")}
    extra = f"""server:
  keys:
    - {{name: a, sha256: {sha['key-a']}, tenant: acme}}
    - {{name: b, sha256: {sha['key-b']}, tenant: globex}}
"""
    gw = await start_gateway(mock_config(upstream, tmp_path, extra))
    a = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="key-a", max_retries=0)
    b = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="key-b", max_retries=0)
    resp = await a.responses.create(model="gpt-test", input=[{"role": "user", "content": "one"},
                                                             {"role": "user", "content": "two"}])
    assert (await a.responses.retrieve(resp.id)).output_text == "echo: two"
    items = await a.responses.input_items.list(resp.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["one", "two"]  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):  # another tenant never sees it
        await b.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        await b.responses.create(model="gpt-test", previous_response_id=resp.id, input="more")
    with pytest.raises(openai.NotFoundError):
        await b.responses.delete(resp.id)
    await a.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        await a.responses.retrieve(resp.id)
    unstored = await a.responses.create(model="gpt-test", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await a.responses.retrieve(unstored.id)


async def test_unknown_previous_response_is_404_in_openai_shape(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(thrifty.url + "/v1/responses",
                            json={"model": "gpt-test", "input": "hi", "previous_response_id": "resp_nope"})
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "Response with id 'resp_nope' not found.",
                                  "type": "invalid_request_error", "param": "previous_response_id", "code": None}}
    assert upstream.calls["openai"] == 0


@pytest.mark.parametrize("body, named", [
    ({"tools": [{"type": "web_search"}]}, "web_search"),
    ({"background": True}, "background"),
    ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "computer_call_output"),
    ({"text": {"format": {"type": "json_schema"}}}, "json_schema"),
])
async def test_what_cannot_be_served_is_refused_by_name(
    thrifty: RunningGateway, upstream: MockUpstream, body: dict[str, Any], named: str
) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(thrifty.url + "/v1/responses", json={"model": "claude-test", "input": "hi", **body})
    assert r.status_code == 400 and named in r.json()["error"]["message"]
    assert upstream.calls["anthropic"] == 0


async def test_the_exact_cache_answers_a_repeated_response(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, "cache: {enabled: true}\n"))
    c = client(gw)
    one = await c.responses.create(model="claude-test", input="same question", temperature=0)
    two = await c.responses.create(model="claude-test", input="same question", temperature=0)
    assert one.output_text == two.output_text == "echo: same question" and one.id != two.id
    assert upstream.calls["anthropic"] == 1
    rows = gw.rows()
    assert len(rows) == 2 and rows[1]["answered_by"] == "cache" and rows[1]["cost_pico"] == 0
    assert (await c.responses.retrieve(two.id)).output_text == "echo: same question"


async def test_postgresql_store_serves_a_follow_up_on_another_replica(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    config = mock_config(upstream, tmp_path).replace(f"store: sqlite:///{tmp_path}/ledger.db", f"store: {url}")
    first, second = await start_gateway(config), await start_gateway(config)
    one = await client(first).responses.create(model="gpt-test", input="remember 42")
    two = await client(second).responses.create(model="gpt-test", previous_response_id=one.id, input="what number?")
    assert [m["content"] for m in upstream.bodies[-1]["messages"]] == ["remember 42", "echo: remember 42", "what number?"]
    assert (await client(second).responses.retrieve(one.id)).output_text == "echo: remember 42"
    ids = {one.id, two.id}
    second.rows()
    rows = [r for r in first.rows() if json.loads(r["extra"]).get("response_id") in ids]
    assert len(rows) == 2
    await client(first).responses.delete(one.id)
    await client(first).responses.delete(two.id)


async def test_a_stream_cut_short_ends_with_response_failed_and_is_not_stored(
    thrifty: RunningGateway, upstream: MockUpstream
) -> None:
    c = client(thrifty)
    stream = await c.responses.create(model="claude-test", input="one two three four five [cut]", stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.failed"
    failed = events[-1].response  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        await c.responses.retrieve(failed.id)
    [row] = thrifty.rows()
    assert row["outcome"] == "partial" and row["output_tokens"] > 0


async def test_stream_from_a_chat_completions_upstream(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    async with client(thrifty).responses.stream(model="gpt-test", input="alpha beta [reason 7]") as stream:
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        final = await stream.get_final_response()
    assert text == "echo: alpha beta" == final.output_text
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 7
    [row] = thrifty.rows()
    assert row["reasoning_tokens"] == 7 and row["stream"]
