"""Features that cross protocols arrive in their native form at the mock upstream, or are
refused by name; the default output cap is a setting and the reply says when it applied."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
          "additionalProperties": False}


def oa(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


async def test_structured_output_crosses_both_ways(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    await oa(thrifty).chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "who?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA, "strict": True}})
    assert upstream.bodies[-1]["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "system" not in upstream.bodies[-1]  # not a prompt instruction any more
    an = anthropic.AsyncAnthropic(base_url=thrifty.url, api_key="x", max_retries=0)
    await an.messages.create(model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "who?"}],
                             extra_body={"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}})
    assert upstream.bodies[-1]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA, "strict": True}}
    await oa(thrifty).responses.create(model="claude-test", input="who?",
                                       text={"format": {"type": "json_schema", "name": "p", "schema": SCHEMA}})
    assert upstream.bodies[-1]["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


async def test_legacy_functions_round_trip_through_claude(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    functions = [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    first = await oa(thrifty).chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "find [tool]"}], functions=functions)
    choice = first.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call is not None
    assert choice.message.function_call.name == "lookup" and not choice.message.tool_calls
    assert upstream.bodies[-1]["tools"][0]["name"] == "lookup"
    second = await oa(thrifty).chat.completions.create(model="claude-test", functions=functions, messages=[
        {"role": "user", "content": "find [tool]"},
        {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}},
        {"role": "function", "name": "lookup", "content": "42"}])
    assert second.choices[0].message.content == "result: 42"
    with pytest.raises(openai.BadRequestError, match="legacy 'functions' cannot be streamed"):
        await oa(thrifty).chat.completions.create(model="claude-test", functions=functions, stream=True,
                                                  messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("extra, named", [
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
])
async def test_openai_only_features_are_refused_by_name(
    thrifty: RunningGateway, upstream: MockUpstream, extra: dict[str, object], named: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=named):
        await oa(thrifty).chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "x"}],
                                                  extra_body=extra)
    assert upstream.calls["anthropic"] == 0


async def test_mcp_servers_to_an_openai_model_are_refused(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    an = anthropic.AsyncAnthropic(base_url=thrifty.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="mcp_servers"):
        await an.messages.create(model="gpt-test", max_tokens=5, messages=[{"role": "user", "content": "x"}],
                                 extra_body={"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m"}]})
    assert upstream.calls["openai"] == 0


async def test_default_output_cap_is_a_setting_and_announced(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, "translation: {default_max_tokens: 16000}\n"))
    raw = await oa(gw).chat.completions.with_raw_response.create(
        model="claude-test", messages=[{"role": "user", "content": "x"}])
    assert upstream.bodies[-1]["max_tokens"] == 16000 and raw.headers["x-thrifty-default-max-tokens"] == "16000"
    raw = await oa(gw).chat.completions.with_raw_response.create(
        model="claude-test", messages=[{"role": "user", "content": "x"}], max_tokens=7)
    assert upstream.bodies[-1]["max_tokens"] == 7 and "x-thrifty-default-max-tokens" not in raw.headers
