"""The upstream transport of the remote providers: the pooled aiohttp session for streams, the
lean keep-alive client (`lean_client`) for complete answers, SSE parsing, upstream errors with
provider keys scrubbed, Retry-After."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from thrifty.errors import UpstreamError
from thrifty.providers.lean_client import H1Client, InvalidHeader, UpstreamClosed
from thrifty.types import EventStream, SSEEvent

_session: aiohttp.ClientSession | None = None
_session_loop: asyncio.AbstractEventLoop | None = None
_h1: H1Client | None = None
_h1_loop: asyncio.AbstractEventLoop | None = None

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
            # A gateway must not carry cookies from one upstream answer to the next request,
            # which may be another tenant's; skipping the jar also spares a lookup per call.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        _session_loop = loop
    return _session


def h1_client() -> H1Client:
    """The process's client for complete answers (one per event loop)."""
    global _h1, _h1_loop
    loop = asyncio.get_running_loop()
    if _h1 is None or _h1_loop is not loop:
        _h1, _h1_loop = H1Client(), loop
    return _h1


async def close_session() -> None:
    global _session, _h1
    if _session is not None and not _session.closed:
        await _session.close()
    _session = None
    if _h1 is not None:
        await _h1.close()
    _h1 = None


def scrub(text: str, secret: str | None = None) -> str:
    """Remove provider keys (and things shaped like them) from text bound for logs or clients."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _SECRETISH.sub("[redacted]", text)


#: The longest Retry-After taken from an upstream (a day); longer, infinite or NaN ones are clamped.
MAX_RETRY_AFTER = 86400.0


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date).
    Anything else (a word, a malformed date) counts as no header."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return _seconds(float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return _seconds(float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
        return _seconds(parsed.timestamp() - time.time()) if parsed else None


def _seconds(value: float) -> float | None:
    if value != value:  # NaN
        return None
    return min(max(0.0, value), MAX_RETRY_AFTER)


async def upstream_error(resp: aiohttp.ClientResponse, secret: str | None) -> UpstreamError:
    """Turn an upstream error response into an UpstreamError that keeps its status and message."""
    try:
        raw = await resp.read()
    except (TimeoutError, aiohttp.ClientError):  # the status came, the body did not
        raw = b""
    return error_from(resp.status, resp.headers, raw, secret)


def error_from(status: int, headers: Any, raw: bytes, secret: str | None) -> UpstreamError:
    """An UpstreamError from an error answer's status, headers and body."""
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
                kind = err.get("type") or err.get("code")
                error_type = kind if isinstance(kind, str) else None
            elif isinstance(err, str):
                message = err
            message = message or str(parsed.get("message") or "")
    except orjson.JSONDecodeError:
        message = raw[:500].decode("utf-8", "replace")
    message = scrub(message or f"upstream answered HTTP {status}", secret)
    return UpstreamError(
        status,
        message,
        retryable=status in RETRYABLE,
        retry_after=retry_after(headers),
        error_type=error_type,
        body=None if body is None else _scrub_body(body, secret),
    )


def _scrub_body(body: dict[str, Any], secret: str | None) -> dict[str, Any] | None:
    try:
        return orjson.loads(scrub(orjson.dumps(body).decode(), secret))
    except orjson.JSONEncodeError:  # nested past orjson's limit: drop it, the message is kept
        return None


def connection_error(exc: BaseException, where: str) -> UpstreamError:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return UpstreamError(504, f"{where} did not answer in time", retryable=True, error_type="timeout")
    if isinstance(exc, aiohttp.ClientPayloadError | UpstreamClosed):
        return UpstreamError(502, f"{where} closed the connection before its answer was complete", retryable=True,
                             error_type="connection_error")
    return UpstreamError(502, f"could not reach {where}: {exc.__class__.__name__}", retryable=True, error_type="connection_error")


#: The error of a stream whose upstream stopped sending before its end.
STREAM_CUT = "the upstream closed the stream before it finished"


@asynccontextmanager
async def reading(resp: aiohttp.ClientResponse, stream: EventStream, upstream: str) -> AsyncIterator[None]:
    """Read `resp`, the body of `stream`, inside this block; every provider's stream ends the same
    way through it. Left with the stream neither complete nor in error: the upstream cut it
    (`STREAM_CUT`). A timeout or connection failure becomes the stream's error. The response
    is released however the block is left, the client going away included."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        stream.error = connection_error(exc, f"{upstream} upstream").message
    else:
        if not stream.complete and stream.error is None:
            stream.error = STREAM_CUT
    finally:
        resp.release()


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


async def post(
    name: str,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    streaming: bool,
    timeout: float,
    connect_timeout: float,
    secret: str | None,
) -> aiohttp.ClientResponse | dict[str, Any]:
    """POST `body` to an upstream: the open response of a stream, or the JSON object answered.

    Connection failures, error statuses and answers that are not a JSON object all become an
    `UpstreamError` that keeps the upstream's status and (scrubbed) message. Complete answers
    go through the lean `H1Client`; streams through aiohttp, whose reader the SSE parser uses.
    """
    where = f"{name} upstream"
    if not streaming:
        try:
            answer = await h1_client().post(url, orjson.dumps(body), headers, timeout=timeout,
                                            connect_timeout=connect_timeout)
        except InvalidHeader as exc:
            raise UpstreamError(400, str(exc), error_type="invalid_request_error") from None
        except (TimeoutError, OSError, ValueError) as exc:  # UpstreamClosed is an OSError too
            raise connection_error(exc, where) from None
        if answer.status >= 400:
            raise error_from(answer.status, answer.headers, answer.body, secret)
        try:
            data = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, f"{where} sent a body that is not JSON", retryable=True) from None
        if not isinstance(data, dict):
            raise UpstreamError(502, f"{where} sent JSON that is not an object", retryable=True)
        return data
    client_timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=timeout)
    try:
        resp = await session().post(url, data=orjson.dumps(body), headers=headers, timeout=client_timeout)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise connection_error(exc, where) from None
    if resp.status >= 400:
        err = await upstream_error(resp, secret)
        resp.release()
        raise err
    return resp
