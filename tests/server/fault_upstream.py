"""An upstream that fails in the ways real ones do, on a real socket (both wire protocols).

The last user message names the fault (its first word), so one server serves every test:

- `hang`      never answer
- `html502`   a 502 whose body is an HTML page
- `truncated` 200 with a JSON body cut off half-way
- `list`      200 with JSON that is not an object
- `bigusage`  200 whose usage counts are absurd (1e30 input, -5 output)
- `badusage`  200 whose usage fields have the wrong types
- `echo401`   401 whose message echoes the provider key it was sent
- `badsse`    a stream with malformed lines and wrongly typed events among good ones
- `sseerror`  a stream that sends one chunk, then an error event echoing the key
- `drip`      a stream of 200 chunks, one every 20 ms (for clients that leave)
- `soon`      429 with `Retry-After: soon` (not a number, not a date)
- `forever`   429 with `Retry-After: inf`
- `errhang`   a 500 whose body never finishes
- `deep`      200 with an answer nested 300 levels deep (orjson writes at most 254)
- `deeperr`   a 400 whose error body is nested 300 levels deep
- `ok`        a normal answer ("hello there")

`/v1/messages/count_tokens` answers `{"tokens": 5}` (no `input_tokens`).

`calls` counts requests by fault; `disconnects` counts handlers whose client went away.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from aiohttp import web


def _fault(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            content = m.get("content")
            text = content if isinstance(content, str) else " ".join(
                str(p.get("text", "")) for p in content or [] if isinstance(p, dict))
            return (text.split() or ["ok"])[0]
    return "ok"


def _key(request: web.Request) -> str:
    return request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")


class FaultUpstream:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.disconnects = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.openai)
        self.app.router.add_post("/v1/messages", self.anthropic)
        self.app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultUpstream:
        # handler_cancellation: a handler learns at once that its client (thrifty) left.
        self.runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def openai(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai")

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "anthropic")

    async def count_tokens(self, request: web.Request) -> web.Response:
        self.calls["count_tokens"] += 1
        return web.json_response({"tokens": 5})

    async def _serve(self, request: web.Request, protocol: str) -> web.StreamResponse:
        body = await request.json()
        fault = _fault(body)
        self.calls[fault] += 1
        try:
            return await self._answer(request, protocol, fault, body)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            raise

    async def _answer(self, request: web.Request, protocol: str, fault: str, body: dict[str, Any]) -> web.StreamResponse:
        key = _key(request)
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault in ("soon", "forever"):
            retry = {"soon": "soon", "forever": "inf"}[fault]
            return web.json_response({"error": {"message": "slow down", "type": "rate_limit_error"}}, status=429,
                                     headers={"Retry-After": retry})
        if fault == "errhang":
            resp = web.StreamResponse(status=500, headers={"Content-Type": "application/json", "Content-Length": "100"})
            await resp.prepare(request)
            await resp.write(b'{"error": {"message": "the upstream is')
            await asyncio.sleep(3600)
        if fault in ("deep", "deeperr"):
            nested: Any = 1
            for _ in range(300):
                nested = {"a": nested}
            if fault == "deeperr":
                text = json.dumps({"error": {"message": "too deep for you", "type": "invalid_request_error"},
                                   "detail": nested})
                return web.Response(status=400, content_type="application/json", text=text)
            text = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m", "extra": nested,
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                            "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
            return web.Response(status=200, content_type="application/json", text=text)
        if fault == "html502":
            return web.Response(status=502, content_type="text/html",
                                text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>")
        if fault == "truncated":
            return web.Response(status=200, content_type="application/json",
                                text='{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess')
        if fault == "list":
            return web.json_response([1, 2, 3])
        if fault == "echo401":
            if protocol == "anthropic":
                err: dict[str, Any] = {"type": "error", "error": {"type": "authentication_error",
                                                                  "message": f"invalid x-api-key {key}"}}
            else:
                masked = key[:8] + "*" * 20 + key[-4:]
                err = {"error": {"message": f"Incorrect API key provided: {masked}. Sent: {key}. You can find your "
                                            "API key at https://platform.openai.com/account/api-keys.",
                                 "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
            return web.json_response(err, status=401)
        if body.get("stream"):
            return await self._stream(request, protocol, fault, key)
        usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        if fault == "bigusage":
            usage = {"prompt_tokens": 1e30, "completion_tokens": -5, "input_tokens": 1e30, "output_tokens": -5}
        elif fault == "badusage":
            usage = {"prompt_tokens": "many", "prompt_tokens_details": "cached", "completion_tokens_details": [1],
                     "input_tokens": [], "cache_creation": "x", "output_tokens": {"n": 1}}
        if protocol == "anthropic":
            return web.json_response({"id": "msg_f", "type": "message", "role": "assistant", "model": "m",
                                      "content": [{"type": "text", "text": "hello there"}], "stop_reason": "end_turn",
                                      "stop_sequence": None, "usage": usage})
        return web.json_response({"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "m",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"},
                                               "finish_reason": "stop"}], "usage": usage})

    async def _stream(self, request: web.Request, protocol: str, fault: str, key: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def raw(text: str) -> None:
            await resp.write(text.encode())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

        def event(kind: str, **data: Any) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        start = event("message_start", message={"id": "msg_f", "type": "message", "role": "assistant", "model": "m",
                                                 "content": [], "stop_reason": None, "stop_sequence": None,
                                                 "usage": {"input_tokens": 10, "output_tokens": 1}})
        if fault == "drip":
            for i in range(200):
                if protocol == "anthropic":
                    await raw(start if i == 0 else event("content_block_delta", index=0,
                                                         delta={"type": "text_delta", "text": f" w{i}"}))
                else:
                    await raw(chunk({"content": f" w{i}"}))
                await asyncio.sleep(0.02)
        elif fault == "sseerror":
            if protocol == "anthropic":
                await raw(start)
                await raw(event("error", error={"type": "overloaded_error", "message": f"bad key {key}"}))
            else:
                await raw(chunk({"role": "assistant", "content": "hel"}))
                await raw("data: " + json.dumps({"error": {"message": f"bad key {key}", "type": "server_error"}}) + "\n\n")
            return resp
        elif fault == "badsse" and protocol == "openai":
            await raw(": keep-alive comment\n\n")
            await raw("data: {not json\n\n")
            await raw("a line with no field name\n\n")
            await raw(chunk({"role": "assistant", "content": "hello"}))
            await raw('data: {"choices": "nope", "usage": "lots"}\n\n')
            await raw('data: {"choices": [1, null, "x"], "usage": {"prompt_tokens": "ten"}}\n\n')
            await raw(chunk({"content": " there"}))
            await raw(chunk({}, "stop"))
            await raw('data: {"id": "c", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2}}\n\n')
            await raw("data: [DONE]\n\n")
        elif fault == "badsse":
            await raw(start)
            await raw("data: {not json\n\n")
            await raw('event: message_start\ndata: {"type": "message_start", "message": "nope"}\n\n')
            await raw('event: message_delta\ndata: {"type": "message_delta", "usage": "lots"}\n\n')
            await raw(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
            await raw(event("content_block_delta", index=0, delta={"type": "text_delta", "text": "hello there"}))
            await raw(event("content_block_stop", index=0))
            await raw(event("content_block_start", index="x", content_block={"type": "tool_use", "id": "t", "name": "f"}))
            await raw(event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                            usage={"output_tokens": 2}))
            await raw(event("message_stop"))
        await resp.write_eof()
        return resp
