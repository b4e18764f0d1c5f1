"""HTTP plumbing shared by the remote providers: one pooled session, SSE parsing, upstream errors."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from thrifty.pipeline.context import SSEEvent
from thrifty.providers.base import UpstreamError

_session: aiohttp.ClientSession | None = None
_session_loop: asyncio.AbstractEventLoop | None = None

#: Statuses worth another try: timeouts, conflicts, rate limits, server errors.
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504, 529}

_SECRETISH = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{4,}|sk-ant-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)")


def session() -> aiohttp.ClientSession:
    """The process's upstream session (one per event loop), created on first use."""
    global _session, _session_loop
    loop = asyncio.get_running_loop()
    if _session is None or _session.closed or _session_loop is not loop:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        _session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda o: orjson.dumps(o).decode(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        _session_loop = loop
    return _session


async def close_session() -> None:
    global _session
    if _session is not None and not _session.closed:
        await _session.close()
    _session = None


def scrub(text: str, secret: str | None = None) -> str:
    """Remove provider keys (and things shaped like them) from text bound for logs or clients."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _SECRETISH.sub("[redacted]", text)


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


async def upstream_error(resp: aiohttp.ClientResponse, secret: str | None) -> UpstreamError:
    """Turn an upstream error response into an UpstreamError that keeps its status and message."""
    raw = await resp.read()
    body: dict[str, Any] | None = None
    message = ""
    error_type: str | None = None
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict):
            body = parsed
            err = parsed.get("error")
            if isinstance(err, dict):
                message = str(err.get("message") or "")
                error_type = err.get("type") or err.get("code")
            elif isinstance(err, str):
                message = err
            message = message or str(parsed.get("message") or "")
    except orjson.JSONDecodeError:
        message = raw[:500].decode("utf-8", "replace")
    message = scrub(message or f"upstream answered HTTP {resp.status}", secret)
    return UpstreamError(
        resp.status,
        message,
        retryable=resp.status in RETRYABLE,
        retry_after=retry_after(resp.headers),
        error_type=error_type,
        body=None if body is None else _scrub_body(body, secret),
    )


def _scrub_body(body: dict[str, Any], secret: str | None) -> dict[str, Any]:
    return orjson.loads(scrub(orjson.dumps(body).decode(), secret))


def connection_error(exc: BaseException, where: str) -> UpstreamError:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return UpstreamError(504, f"{where} did not answer in time", retryable=True, error_type="timeout")
    return UpstreamError(502, f"could not reach {where}: {exc.__class__.__name__}", retryable=True, error_type="connection_error")


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    """Parse a text/event-stream body into events; `data` is decoded JSON when it is JSON."""
    event: str | None = None
    data_lines: list[bytes] = []
    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data_lines:
                payload = b"\n".join(data_lines)
                data: dict[str, Any] | str
                if payload == b"[DONE]":
                    data = "[DONE]"
                else:
                    try:
                        data = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        data = payload.decode("utf-8", "replace")
                yield SSEEvent(data=data, event=event)
            event, data_lines = None, []
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data_lines.append(value)
        elif name == b"event":
            event = value.decode()
    if data_lines:
        payload = b"\n".join(data_lines)
        try:
            yield SSEEvent(data=orjson.loads(payload), event=event)
        except orjson.JSONDecodeError:
            yield SSEEvent(data=payload.decode("utf-8", "replace"), event=event)


def encode_event(ev: SSEEvent) -> bytes:
    """Serialise one event for the wire."""
    data = ev.data if isinstance(ev.data, str) else orjson.dumps(ev.data).decode()
    if ev.event:
        return f"event: {ev.event}\ndata: {data}\n\n".encode()
    return b"data: " + data.encode() + b"\n\n"
