"""Gemini conformance: the native generateContent API (streamed and not), tool calls over
several turns, and the ledger's bill for Gemini's documented usage shape (cached tokens
inside the prompt count, thinking tokens beside the candidates') against a hand-computed one."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from thrifty.providers.gemini import gemini_usage
from thrifty.testing.mock_upstream import MockUpstream


@pytest.fixture
async def gw(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway,
             monkeypatch: pytest.MonkeyPatch) -> RunningGateway:
    monkeypatch.setenv("TEST_GEMINI_KEY", "gemini-secret")
    return await start_gateway(f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - name: flash
    provider: gemini
    model: gemini-2.5-flash
    base_url: {upstream.base_url}
    api_key_env: TEST_GEMINI_KEY
    price: {{input: 0.30, output: 2.50, cache_read: 0.075}}
""")


def test_usage_is_split_as_gemini_bills_it() -> None:
    u = gemini_usage({"promptTokenCount": 1000, "cachedContentTokenCount": 600, "candidatesTokenCount": 50,
                      "thoughtsTokenCount": 200, "totalTokenCount": 1250})
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (400, 600, 250, 200)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_is_billed_from_gemini_usage(gw: RunningGateway, upstream: MockUpstream, stream: bool) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    ask = {"model": "flash", "messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "three words here [cached 12] [reason 30]"}]}
    if stream:
        text = ""
        async for c in await client.chat.completions.create(**ask, stream=True):  # type: ignore[call-overload]
            text += (c.choices[0].delta.content or "") if c.choices else ""
    else:
        text = (await client.chat.completions.create(**ask)).choices[0].message.content  # type: ignore[call-overload]
    assert text == "echo: three words here"
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert upstream.urls[-1] == f"/v1beta/models/gemini-2.5-flash:{action}"
    assert upstream.headers[-1]["x-goog-api-key"] == "gemini-secret"
    sent = upstream.bodies[-1]
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    prompt = len(json.dumps(sent["contents"])) // 4 + 10
    [row] = gw.rows()
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (
        prompt - 12, 12, 4 + 30, 30)
    # $0.30/M uncached, $0.075/M cached, $2.50/M output with thinking, in picodollars
    assert row["cost_pico"] == (prompt - 12) * 300_000 + 12 * 75_000 + 34 * 2_500_000
    assert not row["usage_estimated"]


async def test_tool_round_trip_from_an_anthropic_client(gw: RunningGateway, upstream: MockUpstream) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused", max_retries=0)
    tools = [{"name": "lookup", "description": "find", "input_schema": {"type": "object"}}]
    first = await client.messages.create(model="flash", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                         messages=[{"role": "user", "content": "find it [tool]"}])
    [call] = first.content
    assert call.type == "tool_use" and call.name == "lookup" and first.stop_reason == "tool_use"
    assert upstream.bodies[-1]["tools"] == [{"functionDeclarations": [
        {"name": "lookup", "description": "find", "parameters": {"type": "object"}}]}]
    second = await client.messages.create(model="flash", max_tokens=100, tools=tools, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "find it [tool]"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": "lookup", "input": {"q": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "it is here"}]}])
    assert second.content[0].text == "result: it is here"  # type: ignore[union-attr]
    assert upstream.bodies[-1]["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"result": "it is here"}}}]}]


async def test_an_answer_without_usage_is_a_502_not_an_unpriced_row(gw: RunningGateway) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError, match="does not document: no usageMetadata") as err:
        await client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "x [badshape]"}])
    assert err.value.status_code == 502
    [row] = gw.rows()
    assert row["status"] == 502 and row["cost_pico"] == 0
