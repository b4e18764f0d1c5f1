"""The lean HTTP/1.1 client, against real servers on loopback: a raw asyncio server where the
test needs to misbehave on the wire, aiohttp's server where an ordinary one will do."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import serving
from thrifty.providers.lean_client import H1Client, InvalidHeader, UpstreamClosed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _raw_server(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


@pytest.fixture
async def client() -> AsyncIterator[H1Client]:
    c = H1Client()
    yield c
    await c.close()


async def test_keep_alive_reuses_one_connection_and_sends_the_body(client: H1Client) -> None:
    connections = 0
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(body)
            assert b"Host: 127.0.0.1:" in head and b"X-Key: k" in head
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
            await writer.drain()
        writer.close()

    server, url = await _raw_server(handle)
    async with server:
        for i in range(3):
            answer = await client.post(url, b'{"n": %d}' % i, {"X-Key": "k"}, timeout=5, connect_timeout=5)
            assert (answer.status, answer.body, answer.headers["content-type"]) == (200, b'{"a":1}', "application/json")
    assert connections == 1 and seen == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


async def test_chunked_and_gzip_answers_are_decoded(client: H1Client) -> None:
    payload = gzip.compress(b'{"text": "' + b"x" * 5000 + b'"}')

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(payload), 100):  # many small chunks
            await response.write(payload[i : i + 100])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    async with serving(app) as port:
        answer = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", {}, timeout=5,
                                   connect_timeout=5)
    assert answer.status == 200 and answer.body == b'{"text": "' + b"x" * 5000 + b'"}'


async def test_an_interim_100_continue_is_skipped(client: H1Client) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url = await _raw_server(handle)
    async with server:
        answer = await client.post(url, b"{}", {}, timeout=5, connect_timeout=5)
    assert (answer.status, answer.body) == (200, b"{}")


async def test_a_connection_the_server_closes_is_not_reused(client: H1Client) -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url = await _raw_server(handle)
    async with server:
        for _ in range(2):
            assert (await client.post(url, b"{}", {}, timeout=5, connect_timeout=5)).body == b"{}"
    assert connections == 2


async def test_an_answer_cut_midway_raises_and_a_slow_one_times_out(client: H1Client) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)
        writer.close()

    server, url = await _raw_server(cut)
    async with server:
        with pytest.raises(UpstreamClosed):
            await client.post(url, b"{}", {}, timeout=5, connect_timeout=5)
    server, url = await _raw_server(silent)
    async with server:
        with pytest.raises(TimeoutError):
            await client.post(url, b"{}", {}, timeout=0.2, connect_timeout=5)


async def test_an_error_status_whose_body_never_ends_is_kept(client: H1Client) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 500\r\n\r\n{\"err")
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    server, url = await _raw_server(hang)
    async with server:
        answer = await client.post(url, b"{}", {}, timeout=0.3, connect_timeout=5)
    assert (answer.status, answer.headers["retry-after"], answer.body) == (503, "7", b"")


async def test_headers_pass_through_byte_for_byte_and_line_breaks_are_refused(client: H1Client) -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await _read_request(reader)
        heads.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url = await _raw_server(handle)
    # A client header that was not UTF-8 reaches thrifty as lone surrogates (aiohttp's escape).
    odd = b"v\xff\xfe".decode("utf-8", "surrogateescape")
    async with server:
        await client.post(url, b"{}", {"anthropic-beta": odd}, timeout=5, connect_timeout=5)
        with pytest.raises(InvalidHeader):
            await client.post(url, b"{}", {"X-Evil": "a\r\nHost: elsewhere"}, timeout=5, connect_timeout=5)
    assert b"\r\nanthropic-beta: v\xff\xfe\r\n" in heads[0]


async def test_nothing_listening_is_an_os_error(client: H1Client) -> None:
    with pytest.raises(OSError):
        await client.post("http://127.0.0.1:9/x", b"{}", {}, timeout=5, connect_timeout=5)


async def test_https_upstreams_are_verified_against_the_trust_store(
    client: H1Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"echo": await request.json()})

    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with serving(app, server_ctx) as port:
        url = f"https://localhost:{port}/v1/messages"
        with pytest.raises(ssl.SSLCertVerificationError):  # a certificate nobody vouches for
            await client.post(url, b"{}", {}, timeout=5, connect_timeout=5)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the trust store holds it
        trusting = H1Client()
        try:
            answer = await trusting.post(url, b'{"a": 1}', {"Content-Type": "application/json"}, timeout=5,
                                         connect_timeout=5)
        finally:
            await trusting.close()
    assert (answer.status, answer.body) == (200, b'{"echo": {"a": 1}}')
