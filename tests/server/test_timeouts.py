"""Half-sent requests are closed, malformed HTTP is answered in the API's shape, echoes are cut."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

TIMEOUTS = "server: {header_timeout: 0.5, idle_timeout: 1.0, body_timeout: 0.5}\n"


@pytest.fixture
async def gw(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(mock_config(upstream, tmp_path, TIMEOUTS))


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False


ASK = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


async def test_connections_that_send_half_a_request_are_closed_and_others_are_served(gw: RunningGateway) -> None:
    conns = []
    for i in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        if i % 3 == 0:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty")  # half a head
        elif i % 3 == 1:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # half a body
        conns.append((reader, writer))  # and a third send nothing at all
    started = time.monotonic()
    async with httpx.AsyncClient() as http:  # a legitimate request meanwhile
        r = await http.post(gw.url + "/v1/chat/completions", json=ASK)
    assert r.status_code == 200
    closed = await asyncio.gather(*(_closed_within(reader, 3.0) for reader, _ in conns))
    assert all(closed) and time.monotonic() - started < 3.0
    for _, writer in conns:
        writer.close()


async def test_a_body_that_does_not_arrive_gets_408_in_the_protocol_shape(gw: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"model\"")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(gw: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert await _closed_within(reader, 4.0)
    assert time.monotonic() - started >= 0.9  # not before the idle timeout
    writer.close()


async def test_a_busy_keep_alive_connection_is_never_closed_as_idle(gw: RunningGateway) -> None:
    # Short requests every 0.3 s for 3.5 s on one connection, with idle_timeout 1 s: the
    # connection is busy, however rarely a check of the idle deadline lands inside a request.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(12):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(0.3)
    writer.close()


@pytest.mark.parametrize("raw", [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x01b\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
])
async def test_malformed_http_is_answered_as_json_without_a_traceback(
    gw: RunningGateway, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1].startswith(b"4") and b"application/json" in head
    error = orjson.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and len(error["message"]) < 400
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_a_megabyte_model_name_is_not_echoed_back(gw: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(gw.url + "/v1/chat/completions", json={**ASK, "model": "m" * 1_048_576})
    assert r.status_code == 404 and len(r.content) < 5000
    assert "more characters" in r.json()["error"]["message"]
