"""The official `anthropic` SDK against thrifty, natively and across protocols."""

from __future__ import annotations

import anthropic
import openai

from tests.conftest import RunningGateway
from thrifty.testing.mock_upstream import MockUpstream


def client(thrifty: RunningGateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=thrifty.url, api_key="unused", max_retries=0)


async def test_messages_non_streaming_keeps_cache_control(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    msg = await client(thrifty).messages.create(
        model="claude-test", max_tokens=100, system=system,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "hi [cached 40] [write 10]"}],
    )
    assert msg.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert upstream.bodies[-1]["system"] == system
    assert upstream.headers[-1]["anthropic-version"]  # the client's own version is forwarded
    [row] = thrifty.rows()
    assert row["cache_read_tokens"] == 40 and row["cache_write_tokens"] == 10


async def test_messages_streaming(thrifty: RunningGateway) -> None:
    async with client(thrifty).messages.stream(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "echo: stream me"
    assert final.usage.output_tokens == 3
    assert thrifty.rows()[0]["output_tokens"] == 3


async def test_openai_client_served_by_an_anthropic_model(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    oa = openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="unused", max_retries=0)
    resp = await oa.chat.completions.create(
        model="claude-test",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "cross over"}],
    )
    assert resp.choices[0].message.content == "echo: cross over"
    sent = upstream.bodies[-1]
    assert sent["system"] and sent["max_tokens"] and upstream.calls["anthropic"] == 1
    stream = await oa.chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "and stream"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: and stream"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_anthropic_client_served_by_an_openai_model(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    msg = await client(thrifty).messages.create(
        model="gpt-test", max_tokens=50, system="be brief", messages=[{"role": "user", "content": "other way"}]
    )
    assert msg.content[0].text == "echo: other way"  # type: ignore[union-attr]
    assert upstream.bodies[-1]["messages"][0] == {"role": "system", "content": "be brief"}
    async with client(thrifty).messages.stream(
        model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "streamed other way"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "echo: streamed other way"
