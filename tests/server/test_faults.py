"""Upstream faults and clients that leave: the client always gets an answer in its protocol's
shape, provider keys never leak, and the ledger keeps exactly one honest row per request."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.conftest import RunningGateway, StartGateway, free_port, mock_config
from tests.server.fault_upstream import FaultUpstream
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing.mock_upstream import MockUpstream

KEY = "sk-test-Zq8rT4uV6wX2yA9bC3dE5fG7"
M = Decimal(1_000_000)


@pytest.fixture
async def fault() -> AsyncIterator[FaultUpstream]:
    server = await FaultUpstream().start()
    yield server
    await server.stop()


def fault_models(fault: FaultUpstream, **over: Any) -> str:
    settings = {"timeout": 0.3, "max_retries": 1, "retry_backoff": 0.01, "api_key_env": "FAULT_KEY", **over}
    extra = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return f"""
  - {{name: f-openai, provider: openai, base_url: "{fault.base_url}/v1", price: {{input: 1, output: 2}}, {extra}}}
  - {{name: f-claude, provider: anthropic, base_url: "{fault.base_url}", price: {{input: 1, output: 2}}, {extra}}}
"""


@pytest.fixture
async def gw(upstream: MockUpstream, fault: FaultUpstream, tmp_path: Path, start_gateway: StartGateway,
             monkeypatch: pytest.MonkeyPatch) -> RunningGateway:
    """thrifty with the mock's models (gpt-test, claude-test) and the fault server's (f-openai, f-claude)."""
    monkeypatch.setenv("FAULT_KEY", KEY)
    return await start_gateway(mock_config(upstream, tmp_path) + fault_models(fault))


ROUTES = {"openai": ("/v1/chat/completions", "f-openai"), "anthropic": ("/v1/messages", "f-claude")}


async def ask(thrifty: RunningGateway, protocol: str, text: str, *, model: str | None = None, stream: bool = False,
              path: str | None = None) -> httpx.Response:
    default_path, default_model = ROUTES[protocol]
    body: dict[str, Any] = {"model": model or default_model, "max_tokens": 20, "stream": stream,
                            "messages": [{"role": "user", "content": text}]}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(thrifty.url + (path or default_path), json=body)


async def gw_metrics(thrifty: RunningGateway) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(thrifty.url + "/metrics")).text


def error_of(protocol: str, r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    if protocol == "anthropic":
        assert body["type"] == "error"
    err: dict[str, Any] = body["error"]
    assert err["type"] and err["message"]
    return err


def one_row(thrifty: RunningGateway) -> dict[str, Any]:
    assert thrifty.gateway.ledger is not None and thrifty.gateway.ledger.flush(3), "the ledger did not flush"
    [row] = thrifty.rows()
    return row


# -- upstreams that fail before answering --------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_hanging_upstream_times_out_with_504_after_a_retry(
    gw: RunningGateway, fault: FaultUpstream, protocol: str, stream: bool
) -> None:
    started = time.monotonic()
    r = await ask(gw, protocol, "hang", stream=stream)
    assert r.status_code == 504
    assert "did not answer in time" in error_of(protocol, r)["message"]
    assert fault.calls["hang"] == 2  # the first try and one retry
    assert time.monotonic() - started < 3
    row = one_row(gw)
    assert (row["status"], row["outcome"], row["cost_pico"]) == (504, "error", 0)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("fault_name", "status", "needle"),
    [
        ("html502", 502, "502 Bad Gateway"),  # the upstream's own words, kept
        ("truncated", 502, "not JSON"),
        ("list", 502, "not an object"),
    ],
)
async def test_garbage_answers_are_502_and_retried(
    gw: RunningGateway, fault: FaultUpstream, protocol: str, fault_name: str, status: int, needle: str
) -> None:
    r = await ask(gw, protocol, fault_name)
    assert r.status_code == status, r.text
    assert needle in error_of(protocol, r)["message"]
    assert fault.calls[fault_name] == 2
    row = one_row(gw)
    assert row["status"] == status and row["cost_pico"] == 0


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize(("fault_name", "status", "needle", "calls"), [
    ("soon", 429, "slow down", 2),  # a Retry-After that is neither seconds nor a date: backoff instead
    ("forever", 429, "slow down", 1),  # an endless Retry-After: no retry, and no Retry-After of "inf"
    ("errhang", 500, "answered HTTP 500", 2),  # an error whose body never ends: its status is kept
])
async def test_odd_error_answers_keep_their_status(
    gw: RunningGateway, fault: FaultUpstream, protocol: str, fault_name: str, status: int, needle: str, calls: int
) -> None:
    r = await ask(gw, protocol, fault_name)
    assert r.status_code == status, r.text
    assert needle in error_of(protocol, r)["message"]
    assert fault.calls[fault_name] == calls
    if fault_name == "forever":
        assert int(r.headers["Retry-After"]) >= 3600
    assert one_row(gw)["status"] == status


async def test_answers_nested_past_orjsons_limit_are_refused_cleanly(gw: RunningGateway) -> None:
    r = await ask(gw, "openai", "deep")
    assert r.status_code == 502 and "could not be relayed" in error_of("openai", r)["message"]
    assert one_row(gw)["status"] == 502
    e = await ask(gw, "openai", "deeperr")
    assert e.status_code == 400 and error_of("openai", e)["message"] == "too deep for you"


async def test_a_token_count_without_input_tokens_is_a_502(gw: RunningGateway, fault: FaultUpstream) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(gw.url + "/v1/messages/count_tokens",
                            json={"model": "f-claude", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and fault.calls["count_tokens"] == 1
    assert "input_tokens" in error_of("anthropic", r)["message"]


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize("fault_name", ["bigusage", "badusage"])
async def test_absurd_usage_never_blocks_the_ledger(gw: RunningGateway, protocol: str, fault_name: str) -> None:
    # 1e30 tokens once overflowed the integer money column: the writer retried that batch
    # forever, and no later row was written either.
    r = await ask(gw, protocol, fault_name)
    assert r.status_code == 200, r.text
    r2 = await ask(gw, protocol, "ok")
    assert r2.status_code == 200
    assert gw.gateway.ledger is not None and gw.gateway.ledger.flush(3), "the ledger is stuck"
    rows = gw.rows()
    assert len(rows) == 2
    assert all(0 <= row[k] <= 10**9 for row in rows for k in ("input_tokens", "output_tokens"))
    # never a silent $1,000 row, never a silent $0: flagged, kept as reported, priced from an estimate
    [bad] = [row for row in rows if row["request_id"] == r.headers["x-thrifty-request-id"]]
    flag = orjson.loads(bad["extra"])["usage_implausible"]
    assert flag["problems"] and ("1e+30" in flag["reported"] or "many" in flag["reported"])
    assert bad["usage_estimated"] and 0 < bad["input_tokens"] < 1000 and 0 < bad["cost_usd"] < 0.001
    metrics = await gw_metrics(gw)
    assert "thrifty_usage_implausible_total" in metrics and 'model="' in metrics.split("thrifty_usage_implausible_total{")[1]


# -- provider keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_401_that_echoes_the_provider_key_is_scrubbed(
    gw: RunningGateway, fault: FaultUpstream, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await ask(gw, protocol, "echo401")
    assert r.status_code == 401  # the upstream's status, kept
    message = error_of(protocol, r)["message"]
    assert "[redacted]" in message
    assert fault.calls["echo401"] == 1  # not retried
    row = one_row(gw)
    for leak in (KEY, KEY[8:20], KEY[-12:]):
        assert leak not in r.text
        assert leak not in json.dumps(row)
        assert leak not in caplog.text


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_mid_stream_error_that_echoes_the_key_is_scrubbed(
    gw: RunningGateway, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await ask(gw, protocol, "sseerror", stream=True)
    assert r.status_code == 200
    assert "bad key [redacted]" in r.text
    row = one_row(gw)
    assert row["outcome"] == "partial" and "[redacted]" in row["error"]
    for leak in (KEY, KEY[8:20]):
        assert leak not in r.text and leak not in json.dumps(row) and leak not in caplog.text


# -- malformed streams -------------------------------------------------------------------------------


async def test_malformed_sse_lines_are_skipped_for_openai_clients(gw: RunningGateway) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    stream = await client.chat.completions.create(model="f-openai", messages=[{"role": "user", "content": "badsse"}],
                                                  stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "hello there"
    assert usage is not None and usage.prompt_tokens == 10
    row = one_row(gw)
    assert (row["outcome"], row["input_tokens"], row["output_tokens"]) == ("ok", 10, 2)


@pytest.mark.parametrize(("path", "model"), [("/v1/messages", "f-claude"), ("/v1/messages", "f-openai")])
async def test_malformed_sse_events_are_skipped(gw: RunningGateway, path: str, model: str) -> None:
    r = await ask(gw, "anthropic", "badsse", model=model, stream=True, path=path)
    assert r.status_code == 200
    assert "hello" in r.text and "{not json" not in r.text and '"usage":"lots"' not in r.text
    row = one_row(gw)
    assert (row["status"], row["outcome"]) == (200, "ok")


async def test_a_stream_that_breaks_inside_thrifty_ends_with_an_error_event_and_a_row(gw: RunningGateway) -> None:
    # An Anthropic event with `index: "x"` makes the Anthropic -> OpenAI stream translator
    # raise: the client still gets a well-formed end of stream, and the ledger its row.
    r = await ask(gw, "openai", "badsse", model="f-claude", stream=True)
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert events[1]["choices"][0]["delta"]["content"] == "hello there"
    assert "thrifty failed while streaming (ValueError)" in events[-1]["error"]["message"]
    row = one_row(gw)
    assert (row["status"], row["outcome"]) == (500, "error")
    assert row["input_tokens"] == 10 and row["cost_pico"] > 0  # what was used is still billed


async def test_anthropic_stream_cut_short_ends_with_an_error_event_and_partial_usage(gw: RunningGateway) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0)
    text = ""
    with pytest.raises(anthropic.APIStatusError) as err:
        async with client.messages.stream(model="claude-test", max_tokens=50,
                                          messages=[{"role": "user", "content": "[cut] one two three four"}]) as s:
            async for chunk in s.text_stream:
                text += chunk
    assert "closed the connection before its answer was complete" in str(err.value)
    assert text.startswith("echo: one")
    row = one_row(gw)
    assert row["outcome"] == "partial" and row["status"] == 502 and row["usage_estimated"]
    assert row["input_tokens"] > 0 and row["output_tokens"] >= 2
    assert Decimal(row["cost_pico"]) / 10**12 == (row["input_tokens"] * 3 + row["output_tokens"] * 15) / M


# -- clients that leave --------------------------------------------------------------------------


async def leave_after(url: str, body: dict[str, Any], events: int) -> None:
    async with httpx.AsyncClient(timeout=10) as http, http.stream("POST", url, json=body) as r:
        assert r.status_code == 200
        seen = 0
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen >= events:
                    break  # leaving the block closes the connection


async def wait_for(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_client_that_leaves_mid_stream_is_recorded_cancelled_and_the_upstream_released(
    gw: RunningGateway, fault: FaultUpstream, protocol: str
) -> None:
    path, model = ROUTES[protocol]
    body = {"model": model, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "drip"}]}
    await leave_after(gw.url + path, body, 3)
    # The upstream learns at once that thrifty hung up (its connection is not left open).
    assert await wait_for(lambda: fault.disconnects == 1), "the upstream connection was not released"
    assert gw.gateway.ledger is not None
    assert await wait_for(lambda: gw.gateway.ledger.flush(0.1) and len(gw.rows()) == 1)
    row = one_row(gw)
    assert (row["status"], row["outcome"]) == (499, "cancelled")
    assert row["output_tokens"] > 0 and row["cost_pico"] > 0  # what was streamed is billed


# -- circuit breaker -----------------------------------------------------------------------------------


async def test_the_breaker_opens_after_repeated_5xx_and_answers_503_with_retry_after(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    cfg = mock_config(upstream, tmp_path).replace("retry_backoff: 0.01\n  - name: claude",
                                                  "retry_backoff: 0.01\n    max_retries: 0\n    breaker_failures: 2\n"
                                                  "    breaker_cooldown: 30\n  - name: claude", 1)
    gw = await start_gateway(cfg)
    statuses = []
    for _ in range(2):
        r = await ask(gw, "openai", "[500 always]", model="gpt-test")
        statuses.append(r.status_code)
        assert "broken on purpose" in error_of("openai", r)["message"]
    r = await ask(gw, "openai", "[500 always]", model="gpt-test")
    assert statuses == [500, 500] and r.status_code == 503
    assert 25 <= int(r.headers["Retry-After"]) <= 30
    assert "paused after repeated upstream failures" in error_of("openai", r)["message"]
    assert upstream.calls["openai"] == 2  # the third request never reached the upstream
    a = await ask(gw, "anthropic", "hi", model="gpt-test")  # the Anthropic route, same breaker
    assert a.status_code == 503 and error_of("anthropic", a)["type"] == "api_error"
    assert [row["status"] for row in gw.rows()] == [500, 500, 503, 503]


@pytest.mark.parametrize("trial", ["echo401", "drip-cancelled"])
async def test_a_half_open_trial_that_settles_nothing_does_not_wedge_the_breaker(
    upstream: MockUpstream, fault: FaultUpstream, tmp_path: Path, start_gateway: StartGateway,
    monkeypatch: pytest.MonkeyPatch, trial: str
) -> None:
    monkeypatch.setenv("FAULT_KEY", KEY)
    gw = await start_gateway(mock_config(upstream, tmp_path)
                             + fault_models(fault, max_retries=0, breaker_failures=1, breaker_cooldown=0.2))
    assert (await ask(gw, "openai", "html502")).status_code == 502  # opens the circuit
    assert (await ask(gw, "openai", "ok")).status_code == 503
    await asyncio.sleep(0.25)
    # The half-open trial ends in a way that says nothing about the upstream's health: a
    # 401 (non-retryable) or a client that leaves mid-stream.
    if trial == "echo401":
        assert (await ask(gw, "openai", "echo401")).status_code == 401
    else:
        body = {"model": "f-openai", "stream": True, "messages": [{"role": "user", "content": "drip"}]}
        await leave_after(gw.url + "/v1/chat/completions", body, 2)
        assert await wait_for(lambda: fault.disconnects == 1)
    await asyncio.sleep(0.25)
    assert (await ask(gw, "openai", "ok")).status_code == 200


# -- billing across retries and fallbacks ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retried_request_is_billed_once(thrifty: RunningGateway, upstream: MockUpstream, stream: bool) -> None:
    body = {"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": "[429 once] hello"}]}
    async with httpx.AsyncClient() as http:
        r = await http.post(thrifty.url + "/v1/chat/completions", json=body)
    assert r.status_code == 200 and upstream.calls["openai"] == 2
    row = one_row(thrifty)
    assert json.loads(row["extra"])["retries"] == 1
    # One bill, for the answer that came back (the 429 cost nothing).
    assert (row["input_tokens"], row["output_tokens"]) == (14, 2)
    assert row["cost_pico"] == (14 * 150_000 + 2 * 600_000)


async def test_a_fallback_is_billed_once_at_the_serving_models_price(
    upstream: MockUpstream, fault: FaultUpstream, tmp_path: Path, start_gateway: StartGateway,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULT_KEY", KEY)
    gw = await start_gateway(mock_config(upstream, tmp_path) + fault_models(fault, fallbacks="[gpt-test]"))
    r = await ask(gw, "openai", "html502 please")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: html502 please"
    assert fault.calls["html502"] == 2 and upstream.calls["openai"] == 1
    row = one_row(gw)
    assert row["served_model"] == "gpt-test" and json.loads(row["extra"])["fallback_from"] == "f-openai"
    assert row["cost_pico"] == row["input_tokens"] * 150_000 + row["output_tokens"] * 600_000


async def test_a_cancelled_request_still_gets_its_row(upstream: MockUpstream, fault: FaultUpstream, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # With aiohttp's handler cancellation on, a client that hangs up cancels the handler at
    # once, wherever it is: the row must be written all the same.
    monkeypatch.setenv("FAULT_KEY", KEY)
    gateway = Gateway(parse_config(mock_config(upstream, tmp_path) + fault_models(fault, timeout=30)))
    runner = web.AppRunner(create_app(gateway), handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        body = {"model": "f-openai", "messages": [{"role": "user", "content": "hang"}]}
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=0.3)
        assert await wait_for(lambda: fault.disconnects == 1), "the upstream call was not cancelled"
        assert gateway.ledger is not None
        assert await wait_for(lambda: gateway.ledger.flush(0.1) and gateway.ledger.store.count() == 1)
        [row] = list(gateway.ledger.store.rows())
        assert (row["status"], row["outcome"]) == (499, "cancelled")
    finally:
        await runner.cleanup()
