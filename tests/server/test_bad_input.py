"""Malformed and hostile input gets the protocol's own error shape and an actionable message."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.server.auth import hash_key
from thrifty.testing.mock_upstream import MockUpstream


async def post(thrifty: RunningGateway, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(thrifty.url + path, content=content, headers={"Content-Type": "application/json", **(headers or {})})


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "missing required field 'model'"),
        (b'{"model": "gpt-test"}', "missing required field 'messages'"),
        (b'{"model": "gpt-test", "messages": "hi"}', "'messages' must be an array"),
        (b'{"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "'temperature' must be a number"),
        (b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "'stream' must be a boolean"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"", "empty"),
    ],
)
async def test_openai_bad_requests(thrifty: RunningGateway, payload: bytes, needle: str) -> None:
    r = await post(thrifty, "/v1/chat/completions", payload)
    assert r.status_code == 400
    err = r.json()["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"


async def test_unknown_model_is_404_naming_the_configured_ones(thrifty: RunningGateway) -> None:
    r = await post(thrifty, "/v1/chat/completions", b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}')
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and "gpt-test" in err["message"]


async def test_anthropic_errors_use_the_anthropic_shape(thrifty: RunningGateway) -> None:
    r = await post(thrifty, "/v1/messages", b'{"model": "claude-test", "messages": [{"role": "user", "content": "x"}]}')
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


async def test_body_over_the_limit_is_413(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    thrifty = await start_gateway(mock_config(upstream, tmp_path, "server: {max_body_bytes: 1000}"))
    big = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    r = await post(thrifty, "/v1/chat/completions", big)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]
    assert upstream.calls["openai"] == 0


async def test_unknown_route_answers_json(thrifty: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(thrifty.url + "/v1/nope")
    assert r.status_code == 404 and "no route" in r.json()["error"]["message"]


async def test_bad_tags_header(thrifty: RunningGateway) -> None:
    r = await post(thrifty, "/v1/chat/completions", b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}',
                   {"X-Thrifty-Tags": "route"})
    assert r.status_code == 400 and "X-Thrifty-Tags" in r.json()["error"]["message"]


async def test_keys_are_required_when_configured_and_never_stored(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret-123456")
    extra = f"""
server:
  keys:
    - {{name: team-a, sha256: {hash_key('thr-a')}, tenant: a}}
"""
    cfg = mock_config(upstream, tmp_path, extra).replace("retry_backoff: 0.01\n  - name: claude", "retry_backoff: 0.01\n    api_key_env: UPSTREAM_KEY\n  - name: claude", 1)
    thrifty = await start_gateway(cfg)
    body = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}'
    assert (await post(thrifty, "/v1/chat/completions", body)).status_code == 401
    assert (await post(thrifty, "/v1/chat/completions", body, {"Authorization": "Bearer wrong"})).status_code == 401
    ok = await post(thrifty, "/v1/chat/completions", body, {"Authorization": "Bearer thr-a"})
    assert ok.status_code == 200
    assert upstream.headers[-1]["Authorization"] == "Bearer sk-upstream-secret-123456"
    [row] = thrifty.rows()
    assert row["key_name"] == "team-a" and row["tenant"] == "a"
    dump = repr(row)
    assert "sk-upstream-secret" not in dump and "thr-a" not in dump
