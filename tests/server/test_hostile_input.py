"""Regressions found by the fuzz test (test_fuzz.py), kept as plain examples.

Each of these once answered 500 "thrifty failed" (or aiohttp's own text/plain 500), or left
the request without a way to find its ledger row.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from tests.conftest import RunningGateway, StartGateway, free_port, mock_config
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.server.auth import hash_key
from thrifty.testing.mock_upstream import MockUpstream


async def post(thrifty: RunningGateway, path: str, body: bytes | dict[str, object]) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with httpx.AsyncClient() as http:
        return await http.post(thrifty.url + path, content=content, headers={"Content-Type": "application/json"})


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"])
async def test_json_nested_too_deep_is_a_400(thrifty: RunningGateway, upstream: MockUpstream, path: str) -> None:
    # orjson reads 1024 levels but writes only 254: such a body used to pass validation and
    # then fail to serialise for the upstream.
    body = b'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "metadata": ' \
        + nested(300) + b"}"
    r = await post(thrifty, path, body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "nests JSON deeper than 128 levels" in message
    assert upstream.calls["anthropic"] == 0 and thrifty.rows() == []


async def test_moderate_nesting_still_passes(thrifty: RunningGateway) -> None:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "object", "properties": {"x": schema}}
    body: dict[str, object] = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "deep", "schema": schema}}}
    assert (await post(thrifty, "/v1/chat/completions", body)).status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        # Anthropic-shaped tools on an OpenAI request to an Anthropic model.
        ({"model": "claude-test", "messages": [{"role": "user", "content": "x"}],
          "tools": [{"name": "f", "input_schema": {"type": "object"}}]}, "could not be translated"),
        # A content part that is a number.
        ({"model": "claude-test", "messages": [{"role": "user", "content": [1.5]}]}, "could not be translated"),
    ],
)
async def test_untranslatable_requests_are_400_with_a_ledger_row(
    thrifty: RunningGateway, upstream: MockUpstream, body: dict[str, object], needle: str
) -> None:
    r = await post(thrifty, "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]
    assert upstream.calls["anthropic"] == 0
    # The request reached the pipeline, so it has a row, and the client can name it.
    [row] = thrifty.rows()
    assert row["request_id"] == r.headers["X-Thrifty-Request-Id"] and row["status"] == 400


async def test_pipeline_errors_carry_the_request_id(thrifty: RunningGateway) -> None:
    r = await post(thrifty, "/v1/messages", {"model": "gpt-test", "max_tokens": 5,
                                             "messages": [{"role": "user", "content": "x"}],
                                             "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    [row] = thrifty.rows()
    assert row["request_id"] == r.headers["X-Thrifty-Request-Id"]


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": [{"type": "text", "text": True}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": "not-an-object"}]}],
        [{"role": "assistant", "content": "x", "tool_calls": 7}],
        [{"role": "user", "content": [{"type": "tool_result", "content": {"a": [1]}}]}],
    ],
)
async def test_count_tokens_survives_malformed_content(thrifty: RunningGateway, model: str, messages: list[object]) -> None:
    r = await post(thrifty, "/v1/messages/count_tokens", {"model": model, "messages": messages})
    assert r.status_code == 200, r.text
    assert r.json()["input_tokens"] > 0


async def test_an_unexpected_exception_still_answers_in_the_protocols_shape(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    app = create_app(Gateway(parse_config(mock_config(upstream, tmp_path))))

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_post("/v1/messages/broken", broken)
    app.router.add_post("/v1/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with httpx.AsyncClient() as http:
            a = await http.post(f"http://127.0.0.1:{port}/v1/messages/broken")
            o = await http.post(f"http://127.0.0.1:{port}/v1/broken")
    finally:
        await runner.cleanup()
    assert a.status_code == 500 and a.json()["type"] == "error" and "RuntimeError" in a.json()["error"]["message"]
    assert o.status_code == 500 and "RuntimeError" in o.json()["error"]["message"]


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
@pytest.mark.parametrize("options", [True, [1], "yes"])
async def test_odd_stream_options_on_anthropic_requests(thrifty: RunningGateway, model: str, options: object) -> None:
    # The Anthropic API has no stream_options, so its validator lets any value through.
    r = await post(thrifty, "/v1/messages", {"model": model, "max_tokens": 20, "stream": True, "stream_options": options,
                                             "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert "message_stop" in r.text


@pytest.mark.parametrize("number", [1e19, -1e300, 1.8446744073709552e19])
async def test_huge_integral_floats_with_the_cache_on(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway, number: float
) -> None:
    # The cache key turns 2.0 into 2 so that equal requests match; past 64 bits orjson cannot write the int.
    thrifty = await start_gateway(mock_config(upstream, tmp_path, "cache: {enabled: true}"))
    body = {"model": "gpt-test", "temperature": 0, "messages": [{"role": "user", "content": "x"}], "seed_hint": [number]}
    first, second = await post(thrifty, "/v1/chat/completions", body), await post(thrifty, "/v1/chat/completions", body)
    assert (first.status_code, second.status_code) == (200, 200), first.text
    assert second.headers["X-Thrifty-Cache"] == "hit" and upstream.calls["openai"] == 1


async def test_a_task_header_that_is_not_utf8_neither_fails_nor_stops_the_ledger(thrifty: RunningGateway) -> None:
    # aiohttp hands such a header over with its bytes escaped as lone surrogates, which no
    # store can encode: the writer once retried that row, and every row after it, forever.
    body = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}'
    async with httpx.AsyncClient() as http:
        bad = await http.post(thrifty.url + "/v1/chat/completions", content=body, headers=[(b"X-Thrifty-Task", b"t\xff")])
        good = await http.post(thrifty.url + "/v1/chat/completions", content=body)
    assert (bad.status_code, good.status_code) == (200, 200)
    assert thrifty.gateway.ledger is not None and thrifty.gateway.ledger.flush(3), "the ledger is stuck"
    assert [r["task"] for r in thrifty.rows()] == ["t\ufffd", None]


async def test_a_key_that_is_not_utf8_is_refused_not_a_crash(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    thrifty = await start_gateway(mock_config(upstream, tmp_path, f"server: {{keys: [{{name: a, sha256: {hash_key('k')}}}]}}"))
    body = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}'
    async with httpx.AsyncClient() as http:
        for header in ((b"Authorization", b"Bearer \xff\xfe"), (b"x-api-key", b"\xc3\xa9\xff")):
            r = await http.post(thrifty.url + "/v1/chat/completions", content=body, headers=[header])
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "invalid_api_key"
