"""`/v1/responses` passed through to a model that serves the Responses API itself (the
mock's native endpoint): reasoning items with their encrypted content go back upstream on
every turn, built-in tools reach it, streams are relayed, and the ledger holds one priced
row per response, while thrifty keeps the conversation (the upstream is asked for
`store: false`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

# $1.25/M input, $0.125/M cached input, $10/M output (reasoning included): in picodollars per token
INPUT, CACHED, OUTPUT = 1_250_000, 125_000, 10_000_000


def native_config(upstream: MockUpstream, tmp_path: Path, extra: str = "") -> str:
    model = f"""  - name: gpt-native
    provider: openai
    model: gpt-5-mock
    base_url: {upstream.base_url}/v1
    options: {{responses: native}}
    price: {{input: 1.25, output: 10, cache_read: 0.125}}
    retry_backoff: 0.01
"""
    return mock_config(upstream, tmp_path, extra).replace("models:\n", "models:\n" + model, 1)


def client(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)


def sent(upstream: MockUpstream) -> dict[str, Any]:
    return upstream.bodies[-1]


async def test_encrypted_reasoning_round_trips_over_three_turns(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    """Turn 1 reasons and calls a tool, turn 2 returns the tool's output, turn 3 asks again
    (on another replica): each time the upstream gets the whole conversation, the earlier
    reasoning items verbatim with their encrypted content (the mock refuses any it did not
    issue), statelessly; the ledger holds three rows, reasoning and cached tokens priced."""
    config = native_config(upstream, tmp_path)
    first, second = await start_gateway(config), await start_gateway(config)
    one = await client(first).responses.create(
        model="gpt-native", input="Weather in Paris? [reason 20] [tool]", tools=[WEATHER], reasoning={"effort": "low"})
    reasoning, call = one.output
    assert reasoning.type == "reasoning" and call.type == "function_call" and call.name == "get_weather"
    assert reasoning.encrypted_content is None  # the client did not ask for it; thrifty keeps it
    body1 = sent(upstream)
    assert body1["store"] is False and body1["include"] == ["reasoning.encrypted_content"]
    assert body1["model"] == "gpt-5-mock" and body1["reasoning"] == {"effort": "low"} and body1["tools"] == [WEATHER]
    assert "previous_response_id" not in body1
    [issued] = upstream.issued_reasoning.items()

    two = await client(second).responses.create(  # another replica, at once
        model="gpt-native", previous_response_id=one.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert two.output_text == "result: sunny, 21C" and two.previous_response_id == one.id
    body2 = sent(upstream)
    assert "previous_response_id" not in body2 and body2["store"] is False
    assert body2["input"][0] == {"type": "message", "role": "user", "status": "completed",
                                 "content": [{"type": "input_text", "text": "Weather in Paris? [reason 20] [tool]"}]}
    assert body2["input"][1] == {"type": "reasoning", "id": issued[0], "summary": [], "encrypted_content": issued[1]}
    assert body2["input"][2]["type"] == "function_call" and body2["input"][2]["id"] == call.id
    assert body2["input"][3] == {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}

    three = await client(first).responses.create(
        model="gpt-native", previous_response_id=two.id, input="And tomorrow? [reason 7] [cached 16]",
        include=["reasoning.encrypted_content"])
    assert three.output[0].type == "reasoning" and three.output[0].encrypted_content  # asked for, shown
    body3 = sent(upstream)
    assert [i.get("type", "message") for i in body3["input"]] == [
        "message", "reasoning", "function_call", "function_call_output", "message", "message"]
    assert body3["input"][1] == body2["input"][1]  # the first turn's reasoning, verbatim again
    assert body3["input"][4]["id"] == two.output[0].id  # the upstream's own output item
    assert body3["include"] == ["reasoning.encrypted_content"]
    assert upstream.calls["responses"] == 3 and upstream.calls["openai"] == 0

    second.rows()
    rows = first.rows()
    assert len(rows) == 3
    extras = [json.loads(r["extra"]) for r in rows]
    assert {e["response_id"] for e in extras} == {one.id, two.id, three.id}
    assert all(e["responses"] == "native" and r["outcome"] == "ok" for e, r in zip(extras, rows, strict=True))
    by_id = {json.loads(r["extra"])["response_id"]: r for r in rows}
    for resp, reasoning_tokens in ((one, 20), (two, 0), (three, 7)):
        row = by_id[resp.id]
        usage = resp.usage
        assert usage is not None and row["reasoning_tokens"] == reasoning_tokens
        cached = usage.input_tokens_details.cached_tokens
        assert row["cache_read_tokens"] == cached and row["input_tokens"] == usage.input_tokens - cached
        assert row["output_tokens"] == usage.output_tokens
        assert row["cost_pico"] == (usage.input_tokens - cached) * INPUT + cached * CACHED + usage.output_tokens * OUTPUT
    assert by_id[three.id]["cache_read_tokens"] == 16


async def test_a_built_in_tool_passes_through_and_is_refused_by_name_elsewhere(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    extra = f"""  - name: gpt-falls-back
    provider: openai
    model: gpt-5-mock
    base_url: {upstream.base_url}/v1
    options: {{responses: native}}
    fallbacks: [claude-test]
    max_retries: 0
"""
    gw = await start_gateway(native_config(upstream, tmp_path).replace("models:\n", "models:\n" + extra, 1))
    search = {"type": "web_search", "search_context_size": "low"}
    resp = await client(gw).responses.create(model="gpt-native", input="News today?", tools=[search],
                                             include=["web_search_call.action.sources"])
    assert sent(upstream)["tools"] == [search]
    assert sent(upstream)["include"] == ["web_search_call.action.sources", "reasoning.encrypted_content"]
    call, message = resp.output
    assert call.type == "web_search_call" and message.type == "message"
    assert message.content[0].annotations[0].url == "https://example.com/mock"  # type: ignore[union-attr]
    async with httpx.AsyncClient() as http:
        # an Anthropic model has no web search: refused by name, never dropped
        r = await http.post(gw.url + "/v1/responses", json={"model": "claude-test", "input": "hi", "tools": [search]})
        assert r.status_code == 400 and "web_search" in r.json()["error"]["message"]
        # nor when a native model fails over to one
        r = await http.post(gw.url + "/v1/responses", json={"model": "gpt-falls-back", "input": "hi [500 always]",
                                                            "tools": [search]})
        assert r.status_code == 400 and "'web_search'" in r.json()["error"]["message"]
    assert upstream.calls["anthropic"] == 0
    # a follow-up of the searched turn sends the web_search_call item back as it came
    await client(gw).responses.create(model="gpt-native", previous_response_id=resp.id, input="More?", tools=[search])
    assert sent(upstream)["input"][1] == {"type": "web_search_call", "id": call.id, "status": "completed",
                                          "action": {"type": "search", "query": "News today?"}}


async def test_a_stream_is_relayed_and_stored_before_it_ends(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(native_config(upstream, tmp_path))
    c = client(gw)
    async with c.responses.stream(model="gpt-native", input="alpha beta gamma [reason 3]") as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    assert sent(upstream)["stream"] is True and sent(upstream)["store"] is False
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))  # the upstream's events, in order
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: alpha beta gamma"
    assert final.id.startswith("resp_") and final.id != "resp_mock1" and final.store is True
    assert all(e.response.id == final.id for e in events if hasattr(e, "response"))  # type: ignore[union-attr]
    assert final.output[0].type == "reasoning" and final.output[0].encrypted_content is None
    # the follow-up is accepted the moment the stream has ended
    follow = await c.responses.create(model="gpt-native", previous_response_id=final.id, input="again")
    assert follow.output_text == "echo: again"
    assert sent(upstream)["input"][1]["encrypted_content"]  # the streamed turn's reasoning went back
    rows = gw.rows()
    assert len(rows) == 2 and rows[0]["stream"] and rows[0]["reasoning_tokens"] == 3 and not rows[0]["usage_estimated"]
    stored = await c.responses.retrieve(final.id)
    assert stored.output_text == "echo: alpha beta gamma" and stored.output[0].encrypted_content is None


async def test_a_stream_cut_short_fails_and_is_not_stored(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(native_config(upstream, tmp_path))
    stream = await client(gw).responses.create(model="gpt-native", input="one two three four [cut]", stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.failed"
    [row] = gw.rows()
    assert row["outcome"] == "partial" and row["output_tokens"] > 0 and row["usage_estimated"]


async def test_the_exact_cache_acts_on_a_pass_through(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(native_config(upstream, tmp_path, "cache: {enabled: true}\n"))
    c = client(gw)
    one = await c.responses.create(model="gpt-native", input="same question", temperature=0)
    two = await c.responses.create(model="gpt-native", input="same question", temperature=0)
    async with c.responses.stream(model="gpt-native", input="same question", temperature=0) as stream:
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        three = await stream.get_final_response()
    assert one.output_text == two.output_text == text == three.output_text == "echo: same question"
    assert len({one.id, two.id, three.id}) == 3
    assert upstream.calls["responses"] == 1
    # the same question as a chat request is another key: never served a response object
    async with httpx.AsyncClient() as http:
        r = await http.post(gw.url + "/v1/chat/completions", json={
            "model": "gpt-native", "temperature": 0, "messages": [{"role": "user", "content": "same question"}]})
    assert r.json()["object"] == "chat.completion" and upstream.calls["openai"] == 1
    rows = gw.rows()
    assert [r["answered_by"] for r in rows[:3]] == [None, "cache", "cache"]
    assert rows[1]["cost_pico"] == rows[2]["cost_pico"] == 0
    assert (await c.responses.retrieve(three.id)).output_text == "echo: same question"


async def test_dedup_sends_identical_concurrent_requests_once(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(native_config(upstream, tmp_path, "dedup: {enabled: true}\n"))
    c = client(gw)
    answers = await asyncio.gather(*[c.responses.create(model="gpt-native", input="busy [slow 300]", temperature=0)
                                     for _ in range(3)])
    assert {a.output_text for a in answers} == {"echo: busy"} and len({a.id for a in answers}) == 3
    assert upstream.calls["responses"] == 1
    rows = gw.rows()
    assert len(rows) == 3 and sorted(r["answered_by"] or "" for r in rows) == ["", "dedup", "dedup"]
    assert sum(1 for r in rows if r["cost_pico"] > 0) == 1
    for a in answers:  # each is its own stored response
        assert (await c.responses.retrieve(a.id)).output_text == "echo: busy"


async def test_translate_mode_keeps_a_native_capable_model_on_chat(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    config = native_config(upstream, tmp_path).replace("{responses: native}", "{responses: translate}")
    gw = await start_gateway(config)
    resp = await client(gw).responses.create(model="gpt-native", input="hello")
    assert resp.output_text == "echo: hello"
    assert upstream.calls["openai"] == 1 and upstream.calls["responses"] == 0


async def test_encrypted_reasoning_is_asked_of_reasoning_models_only(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    """OpenAI answers 400 to encrypted reasoning asked of a model that does not reason (the
    mock too), so thrifty asks for it only of a reasoning model or a request naming `reasoning`."""
    config = native_config(upstream, tmp_path).replace("model: gpt-5-mock", "model: gpt-4.1-mini")
    gw = await start_gateway(config)
    one = await client(gw).responses.create(model="gpt-native", input="hello")
    assert "include" not in sent(upstream) and sent(upstream)["store"] is False
    two = await client(gw).responses.create(model="gpt-native", previous_response_id=one.id, input="again",
                                            include=["message.output_text.logprobs"])
    assert sent(upstream)["include"] == ["message.output_text.logprobs"] and two.output_text == "echo: again"
    assert len(sent(upstream)["input"]) == 3


async def test_the_cap_reaches_a_pass_through_as_max_output_tokens(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(native_config(upstream, tmp_path, "cap: {enabled: true, default_max_tokens: 50, "
                                                               "max_tokens: 200}\n"))
    await client(gw).responses.create(model="gpt-native", input="hello")
    assert sent(upstream)["max_output_tokens"] == 50
    await client(gw).responses.create(model="gpt-native", input="hello", max_output_tokens=1000)
    assert sent(upstream)["max_output_tokens"] == 200
    await client(gw).responses.create(model="gpt-native", input="hello", max_output_tokens=100)
    assert sent(upstream)["max_output_tokens"] == 100
    [_, _, row] = gw.rows()
    assert json.loads(row["extra"])["responses"] == "native"
