"""models.retrieve in both SDKs, routes without /v1, CORS preflights, and the unknown-route 404."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream


async def test_models_retrieve_in_both_sdks(thrifty: RunningGateway) -> None:
    oa = openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="x", max_retries=0)
    model = await oa.models.retrieve("gpt-test")
    assert model.id == "gpt-test" and model.owned_by == "openai"
    with pytest.raises(openai.NotFoundError, match="not configured"):
        await oa.models.retrieve("nope")
    an = anthropic.AsyncAnthropic(base_url=thrifty.url, api_key="x", max_retries=0)
    info = await an.models.retrieve("claude-test")
    assert info.id == "claude-test" and info.type == "model"


async def test_every_openai_route_works_without_v1(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    oa = openai.AsyncOpenAI(base_url=thrifty.url, api_key="x", max_retries=0)
    assert [m.id for m in (await oa.models.list()).data] == ["gpt-test", "claude-test"]
    assert (await oa.models.retrieve("claude-test")).id == "claude-test"
    assert (await oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "a"}])).choices
    assert (await oa.responses.create(model="claude-test", input="b")).output_text == "echo: b"
    assert (await oa.completions.create(model="gpt-test", prompt="c")).choices[0].text == " echo: c"


async def test_cors_preflight_and_headers(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, 'cors: {allow_origins: ["https://app.example"]}\n'))
    async with httpx.AsyncClient() as http:
        pre = await http.options(gw.url + "/v1/chat/completions", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert pre.headers["access-control-allow-methods"] == "POST, OPTIONS"
        assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
        stranger = await http.options(gw.url + "/v1/responses/resp_1", headers={"Origin": "https://evil.example"})
        assert stranger.status_code == 204 and "access-control-allow-origin" not in stranger.headers
        assert stranger.headers["allow"] == "DELETE, GET, OPTIONS"
        r = await http.post(gw.url + "/v1/chat/completions", headers={"Origin": "https://app.example"},
                            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-Thrifty-Request-Id" in r.headers["access-control-expose-headers"]


async def test_unknown_route_lists_what_thrifty_serves(thrifty: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(thrifty.url + "/v1/audio/speech", json={})
    message = r.json()["error"]["message"]
    assert r.status_code == 404 and message.startswith("no route POST /v1/audio/speech; thrifty serves: ")
    for route in ("POST /v1/chat/completions", "POST /v1/messages", "POST /v1/responses", "POST /v1/embeddings",
                  "POST /v1/completions", "GET /v1/models/{id}"):
        assert route in message
