"""Bedrock Converse conformance: SigV4-signed requests (botocore), tool calls over several
turns, streams in AWS's event-stream framing, and the ledger's bill for Bedrock's documented
usage shape (cache reads and writes beside `inputTokens`) against a hand-computed one."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from thrifty.testing.mock_upstream import MockUpstream


@pytest.fixture
async def gw(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway,
             monkeypatch: pytest.MonkeyPatch) -> RunningGateway:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTHRIFTYTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    return await start_gateway(f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - name: claude-bedrock
    provider: bedrock
    model: anthropic.claude-sonnet-4-5-20250929-v1:0
    base_url: {upstream.base_url}
    price: {{input: 3, output: 15, cache_read: 0.3, cache_write: 3.75}}
    options: {{region: eu-west-1}}
""")


def assert_signed(upstream: MockUpstream) -> None:
    """Recompute the SigV4 signature of the request the mock received, with botocore."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {k.lower(): v for k, v in upstream.headers[-1].items()}
    auth = headers["authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest(method="POST", url=upstream.base_url + upstream.urls[-1], data=upstream.raw_bodies[-1],
                         headers={h: headers[h] for h in signed if h != "host"})
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials("AKIDTHRIFTYTEST", "not-a-real-secret"), "bedrock", "eu-west-1")
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    assert auth.split("Signature=")[1] == signer.signature(string_to_sign, request)


def client(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
async def test_signed_converse_billed_from_bedrock_usage(gw: RunningGateway, upstream: MockUpstream, stream: bool) -> None:
    ask = {"model": "claude-bedrock", "max_tokens": 200,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "some words here [cached 40] [write 25]"}]}
    if stream:
        text = ""
        async for c in await client(gw).chat.completions.create(**ask, stream=True):  # type: ignore[call-overload]
            text += (c.choices[0].delta.content or "") if c.choices else ""
    else:
        text = (await client(gw).chat.completions.create(**ask)).choices[0].message.content  # type: ignore[call-overload]
    assert text == "echo: some words here"
    action = "converse-stream" if stream else "converse"
    assert upstream.urls[-1] == f"/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/{action}"
    auth = upstream.headers[-1]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTHRIFTYTEST/") and "/eu-west-1/bedrock/aws4_request" in auth
    assert_signed(upstream)
    sent = upstream.bodies[-1]
    assert sent["system"] == [{"text": "Be brief."}] and sent["inferenceConfig"] == {"maxTokens": 200}
    base = len(json.dumps(sent["messages"])) // 4 + 10
    [row] = gw.rows()
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (
        base, 40, 25, 4)
    # $3/M input, $0.30/M cache read, $3.75/M cache write, $15/M output, in picodollars
    assert row["cost_pico"] == base * 3_000_000 + 40 * 300_000 + 25 * 3_750_000 + 4 * 15_000_000


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_round_trip(gw: RunningGateway, upstream: MockUpstream, stream: bool) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    ask = {"model": "claude-bedrock", "tools": tools, "messages": [{"role": "user", "content": "find [tool]"}]}
    if stream:
        s = await client(gw).chat.completions.create(**ask, stream=True)  # type: ignore[call-overload]
        deltas = [c.choices[0].delta for c in [c async for c in s] if c.choices and c.choices[0].delta.tool_calls]
        call_id = deltas[0].tool_calls[0].id
        arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas)
    else:
        first = await client(gw).chat.completions.create(**ask)  # type: ignore[call-overload]
        [call] = first.choices[0].message.tool_calls
        call_id, arguments = call.id, call.function.arguments
    assert call_id == "tooluse_mock1" and json.loads(arguments) == {"q": "x"}
    second = await client(gw).chat.completions.create(model="claude-bedrock", tools=tools, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "find [tool]"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "over there"}])
    assert second.choices[0].message.content == "result: over there"
    assert upstream.bodies[-1]["messages"][1:] == [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": call_id, "name": "lookup", "input": {"q": "x"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": call_id, "content": [{"text": "over there"}]}}]}]


async def test_an_answer_without_usage_is_a_502(gw: RunningGateway) -> None:
    with pytest.raises(openai.APIStatusError, match="does not document: no usage") as err:
        await client(gw).chat.completions.create(model="claude-bedrock",
                                                 messages=[{"role": "user", "content": "x [badshape]"}])
    assert err.value.status_code == 502 and gw.rows()[0]["cost_pico"] == 0
