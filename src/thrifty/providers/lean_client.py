"""A lean HTTP/1.1 client for complete (non-streamed) upstream answers.

aiohttp's client does a lot per request that a gateway talking to a handful of known upstreams
does not need (cookie jars, redirects, tracing hooks, URL objects, several timers), and on a
small machine that work is most of what a relay spends on a request. This client keeps one
pool of keep-alive connections per upstream origin, writes the request in one call, parses the
answer with `httptools` (the C parser uvicorn uses: content length, chunked bodies, keep-alive
rules) and has one timer per request. Streams still go through aiohttp (`providers.transport`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

#: Idle connections older than this are closed rather than reused: servers close idle
#: keep-alive connections too (uvicorn after 5 s), and a request must not race that close.
IDLE_SECONDS = 4.0
#: Idle connections kept per origin.
MAX_IDLE = 64


class UpstreamClosed(ConnectionError):
    """The connection ended before a complete answer arrived."""


class InvalidHeader(ValueError):
    """A header that HTTP cannot carry (a line break or NUL in it, or a name that is not a token)."""


#: Headers this client writes itself.
_OWN_HEADERS = frozenset({"host", "content-length", "accept-encoding", "transfer-encoding", "connection"})
_NAME = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _header_bytes(name: str, value: str) -> bytes:
    """`Name: value` on the wire. A value that arrived from a client with bytes that are not
    UTF-8 (aiohttp hands them over as lone surrogates) goes out as the same bytes."""
    raw_name = name.encode("latin-1", "replace")
    raw_value = value.encode("utf-8", "surrogateescape")
    if not _NAME.match(raw_name) or b"\r" in raw_value or b"\n" in raw_value or b"\0" in raw_value:
        raise InvalidHeader(f"the header {name!r} has characters HTTP does not allow")
    return raw_name + b": " + raw_value


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds what arrives to the parser, resolves one answer at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._status = 0
        self.keep_alive = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"the upstream sent a malformed HTTP answer ({exc})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._status and not self._framed():
                self._complete()  # a body that ends when the connection does
            else:
                self._fail(UpstreamClosed("the upstream closed the connection before its answer was complete"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._headers, self._body, self._status = [], [], 0
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._complete()

    # -- one request -------------------------------------------------------------------------

    def send(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._waiter = loop.create_future()
        self._headers, self._body, self._status = [], [], 0
        self.transport.write(payload)
        return self._waiter

    def expire(self, timeout: float) -> None:
        """The answer took too long. An error status already received is kept (it says more
        than a timeout would), without the part of its body that came: half a body is no message."""
        if self._status >= 400:
            self.keep_alive = False
            self._body = []
            self._complete()
        else:
            self._fail(TimeoutError(f"no complete answer within {timeout:g}s"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _framed(self) -> bool:
        names = {k.lower() for k, _ in self._headers}
        return b"content-length" in names or b"transfer-encoding" in names

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        headers: CIMultiDict[str] = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self._headers
        )
        body = b"".join(self._body)
        encoding = headers.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "deflate") and body:
            try:
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
            except zlib.error as exc:
                self._fail(UpstreamClosed(f"the upstream's {encoding} body could not be decoded ({exc})"))
                return
        waiter.set_result(Answer(self._status, CIMultiDictProxy(headers), body))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class H1Client:
    """Keep-alive pools per origin; `post` returns the complete answer or raises.

    Raises `TimeoutError` (connect or answer too slow), `UpstreamClosed`, or `OSError`
    (could not connect)."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._origins: dict[str, tuple[_Origin, bytes]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
                   connect_timeout: float) -> Answer:
        origin, path = self._origin(url)
        lines = [b"POST ", path, b" HTTP/1.1\r\nHost: ", origin.host_header,
                 b"\r\nAccept-Encoding: gzip, deflate\r\nContent-Length: ", str(len(body)).encode()]
        for name, value in headers.items():
            if name.lower() in _OWN_HEADERS:
                continue
            lines += [b"\r\n", _header_bytes(name, value)]
        lines += [b"\r\n\r\n", body]
        loop = asyncio.get_running_loop()
        conn = self._take(origin) or await self._connect(origin, loop, connect_timeout)
        waiter = conn.send(b"".join(lines), loop)
        timer = loop.call_later(timeout, conn.expire, timeout)
        try:
            answer = await waiter
        except BaseException:
            conn.close()  # a half-read answer leaves the connection unusable
            raise
        finally:
            timer.cancel()
        if conn.keep_alive and not conn.closed:
            self._give_back(origin, conn)
        else:
            conn.close()
        return answer

    async def close(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()

    # -- pool ----------------------------------------------------------------------------------

    def _origin(self, url: str) -> tuple[_Origin, bytes]:
        known = self._origins.get(url)
        if known is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            default = 443 if parts.scheme == "https" else 80
            port = parts.port or default
            host = parts.hostname
            shown = f"[{host}]" if ":" in host else host
            header = shown if port == default else f"{shown}:{port}"
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            known = self._origins[url] = (_Origin(parts.scheme, host, port, header.encode("idna")), path.encode())
        return known

    def _take(self, origin: _Origin) -> _Connection | None:
        pool = self._idle.get(origin)
        now = time.monotonic()
        while pool:
            conn = pool.pop()
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def _give_back(self, origin: _Origin, conn: _Connection) -> None:
        pool = self._idle.setdefault(origin, deque())
        if len(pool) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        pool.append(conn)

    async def _connect(self, origin: _Origin, loop: asyncio.AbstractEventLoop, timeout: float) -> _Connection:
        ctx: Any = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        _, conn = await asyncio.wait_for(
            loop.create_connection(_Connection, origin.host, origin.port, ssl=ctx,
                                   server_hostname=origin.host if ctx else None),
            timeout,
        )
        return conn


