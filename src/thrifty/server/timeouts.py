"""Connections that never finish a request are closed; malformed HTTP gets an answer in the API's shape.

aiohttp reads a request's headers and body without a deadline of its own, so a client that
opens a connection and sends half a request (or nothing) holds a socket, before any key is
checked, for as long as it likes; enough of them exhaust the process's file descriptors. And
an HTTP request aiohttp's parser refuses is answered in plain text, with a 15-line traceback in
the log. `ThriftyRunner` is aiohttp's `AppRunner` with a connection handler that:

- closes a connection whose request headers have not all arrived `server.header_timeout`
  seconds (10 by default) after its first byte (or after the connection opened);
- closes a keep-alive connection idle for `server.idle_timeout` seconds (75) between requests;
- answers a request the HTTP parser refuses (400, 413, 431, ...) in the OpenAI error shape
  (the Anthropic one under `/v1/messages`), with the parser's message cut to 200 characters,
  and logs it at DEBUG without a traceback.

The body has its own deadline, `server.body_timeout` (60 s), enforced where the handler reads it
(`Handlers._read_json`: 408 in the protocol's shape).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from thrifty.protocol.translate import anthropic_error, openai_error

__all__ = ["ThriftyRunner", "clip"]


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters, saying how much was cut (for messages that echo input)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class _GuardedHandler(RequestHandler):
    """aiohttp's connection handler with a header deadline, an idle deadline and quiet 4xx."""

    header_timeout = 10.0
    idle_timeout = 75.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        now = self._loop.time()
        self._guard_opened = now
        self._guard_idle_since = now
        self._guard_partial: float | None = None
        #: While a request runs, how often to look again (its body has its own deadline).
        self._guard_tick = max(0.05, min(1.0, self.header_timeout / 4))
        self._guard_timer: asyncio.TimerHandle | None = self._loop.call_at(now + self.header_timeout, self._guard_check)

    def connection_lost(self, exc: BaseException | None) -> None:
        timer = getattr(self, "_guard_timer", None)
        if timer is not None:
            timer.cancel()
            self._guard_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Any byte from the client ends an idle spell. Without this a busy keep-alive
        # connection whose short requests all fell between two checks looked idle since it
        # opened and was closed under the client as it sent its next request (a reset).
        self._guard_idle_since = self._loop.time()
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._guard_partial = None  # a whole request head arrived
        elif self._guard_partial is None and not self._request_in_progress and not self._messages:
            self._guard_partial = self._loop.time()

    def _guard_check(self) -> None:
        """Close the connection if it is past a deadline; else look again at the next one."""
        self._guard_timer = None
        transport = self.transport
        if transport is None or self._force_close or self._close:
            return
        now = self._loop.time()
        if self._request_in_progress or self._messages:
            self._guard_idle_since = now
            self._guard_partial = None
            due = now + self._guard_tick
        elif self._guard_partial is not None:
            due = self._guard_partial + self.header_timeout
        elif self._request_count == 0:
            due = self._guard_opened + self.header_timeout
        else:
            due = self._guard_idle_since + self.idle_timeout
        if now >= due:
            return self._guard_close(transport)
        self._guard_timer = self._loop.call_at(due, self._guard_check)

    def _guard_close(self, transport: asyncio.BaseTransport) -> None:
        self.force_close()
        transport.close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self.logger.debug("refused a malformed HTTP request (%s): %s", status, clip(str(message or exc), 200))
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already being sent")
        try:
            path = str(request.path)
        except Exception:
            path = ""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Bad Request"
        text = f"malformed HTTP request ({phrase}): {clip(str(message or exc or phrase), 200)}"
        if path.startswith("/v1/messages"):
            body = anthropic_error(status, text)
        else:
            body = openai_error(status, text, "invalid_request_error", code="bad_http_request")
        resp = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
        resp.force_close()
        return resp


class _GuardedServer(Server):
    handler_class: type[_GuardedHandler] = _GuardedHandler

    def __call__(self) -> RequestHandler:
        return self.handler_class(self, loop=self._loop, **self._kwargs)


class ThriftyRunner(web.AppRunner):
    """`web.AppRunner` whose connections have header and idle deadlines (see the module)."""

    def __init__(self, app: web.Application, *, header_timeout: float = 10.0, idle_timeout: float = 75.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", idle_timeout)
        super().__init__(app, **kwargs)
        self.handler_class = type("GuardedHandler", (_GuardedHandler,),
                                  {"header_timeout": header_timeout, "idle_timeout": idle_timeout})

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer
        server.handler_class = self.handler_class  # type: ignore[attr-defined]
        return server
