"""`/v1/responses`: the OpenAI Responses API, served through the ordinary pipeline.

A request is translated to the chat-completions request that means the same
(`thrifty.protocol.responses`), earlier turns included when it names a
`previous_response_id`, and runs through the pipeline like any chat request: the cache,
dedup, compression, caps and routing all act on it, the dispatcher translates it once more
for an Anthropic, local or chat-completions provider, and the request leaves exactly one
ledger row. The chat answer (or stream) is turned back into a `response` object (or the
Responses events), and a stored response is committed to the shared store before its
reply ends.

Routes: POST /v1/responses, GET and DELETE /v1/responses/{id},
GET /v1/responses/{id}/input_items; each also without the /v1 prefix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from thrifty.errors import BadRequest, NotFound, ThriftyError, Unauthorized
from thrifty.gateway import Gateway
from thrifty.protocol import responses as rp
from thrifty.protocol.errors import truncate
from thrifty.protocol.openai import finish_reason_of
from thrifty.protocol.responses_stream import ChatToResponsesStream
from thrifty.protocol.streams import encode_event
from thrifty.server.app import _FORWARDED, _SSE_HEADERS, Handlers, parse_tags
from thrifty.server.auth import Principal
from thrifty.server.guard import KEYS, error_response
from thrifty.server.response_store import ResponseStore, StoredResponse
from thrifty.types import Context, Reply

__all__ = ["ResponsesHandlers", "setup"]

log = logging.getLogger(__name__)


def _not_found(response_id: str) -> NotFound:
    # OpenAI answers an unknown id with a 404 whose type is invalid_request_error.
    return NotFound(f"Response with id {truncate(response_id)!r} not found.", error_type="invalid_request_error",
                    param="previous_response_id")


class ResponsesHandlers:
    def __init__(self, gateway: Gateway, handlers: Handlers) -> None:
        self.gateway = gateway
        self.h = handlers
        self._store: ResponseStore | None = None

    @property
    def store(self) -> ResponseStore:
        assert self._store is not None, "the response store opens when the application starts"
        return self._store

    async def open(self) -> None:
        self._store = await asyncio.to_thread(ResponseStore, self.gateway.config.store)
        self.gateway.services.plugins["responses"] = self._store

    async def close(self) -> None:
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None

    def _principal(self, request: web.Request) -> Principal | None:
        return self.h._principal(request)

    def _unauthorized(self) -> web.Response:
        return error_response("openai", Unauthorized(
            "missing or invalid thrifty key: send it as 'Authorization: Bearer <key>'", code="invalid_api_key"))

    # -- POST /v1/responses ----------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        principal = self._principal(request)
        if principal is None:
            return self._unauthorized()
        try:
            body = await self.h._read_json(request)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest("missing required field 'model'", "model")
            if "input" not in body:
                raise BadRequest("missing required field 'input'", "input")
            if not isinstance(body.get("stream", False), bool):
                raise BadRequest("'stream' must be a boolean", "stream")
            tags = parse_tags(request.headers.get("X-Thrifty-Tags"), body.get("metadata"))
            aliases = self.gateway.aliases
            if not self.gateway.config.has_model(model) and not (aliases is not None and aliases(model)):
                known = ", ".join(m.name for m in self.gateway.config.models) or "none"
                raise NotFound(f"the model {truncate(model)!r} is not configured in thrifty (configured: {known})",
                               param="model", code="model_not_found")
            history: list[dict[str, Any]] = []
            previous = body.get("previous_response_id")
            if previous is not None:
                if not isinstance(previous, str):
                    raise BadRequest("'previous_response_id' must be a string", "previous_response_id")
                stored = await self.store.aget(principal.tenant, previous)
                if stored is None:
                    raise _not_found(previous)
                history = stored.conversation()
            items = rp.input_items(body["input"])
            chat = rp.chat_request(body, history, items)
        except ThriftyError as exc:
            return error_response("openai", exc)
        response_id = rp.new_id("resp")
        ctx = Context(protocol="openai", body=chat, config=self.gateway.config, key_name=principal.name,
                      tenant=principal.tenant, tags=tags, requested_model=model,
                      headers={k.lower(): v for k, v in request.headers.items() if k.lower() in _FORWARDED})
        ctx.extra["endpoint"] = "responses"
        ctx.extra["response_id"] = response_id
        task = request.headers.get("X-Thrifty-Task")
        if task:
            ctx.task = task[:200].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if self.gateway.config.ledger.store_bodies:
            ctx.original_body = body
        store = body.get("store") is not False
        assert self.gateway.pipeline is not None
        try:
            reply = await self.gateway.pipeline(ctx)
        except asyncio.CancelledError:
            self.h._record(ctx, None, 499, "cancelled", "the client went away before the answer", started, None)
            raise
        except ThriftyError as exc:
            self.h._record(ctx, None, exc.status, "error", exc.message, started, None)
            return error_response("openai", exc, headers={"X-Thrifty-Request-Id": ctx.request_id})
        except Exception as exc:
            log.exception("request %s failed inside thrifty", ctx.request_id)
            self.h._record(ctx, None, 500, "error", f"internal error: {exc.__class__.__name__}", started, None)
            return error_response("openai", 500, f"thrifty failed to handle this request ({exc.__class__.__name__}); "
                                  f"see the server log for request {ctx.request_id}",
                                  headers={"X-Thrifty-Request-Id": ctx.request_id})
        headers = self.h._reply_headers(ctx, reply)
        if reply.stream is not None:
            return await self._stream(request, ctx, reply, headers, started, body, response_id, items, history, store)
        if not reply.ok or reply.body is None:  # an upstream error relayed as a body
            self.h._record(ctx, reply, reply.status, "error", None, started, None)
            return web.Response(body=orjson.dumps(reply.body or {}), status=reply.status,
                                content_type="application/json", headers=headers)
        try:
            response = rp.response_object(body, response_id, None, rp.output_items(reply.body),
                                          finish_reason_of(reply.body), reply.body.get("usage"))
            if store:
                await self.store.aput(principal.tenant, response, items, history)
        except Exception as exc:
            log.exception("request %s: the response could not be built or stored", ctx.request_id)
            message = f"the answer could not be stored ({exc.__class__.__name__}); see the server log"
            self.h._record(ctx, reply, 500, "error", message, started, None)
            return error_response("openai", 500, message, headers=headers)
        self.h._record(ctx, reply, 200, "ok", None, started, None)
        return web.Response(body=orjson.dumps(response), content_type="application/json", headers=headers)

    async def _stream(self, request: web.Request, ctx: Context, reply: Reply, headers: dict[str, str],
                      started: float, body: dict[str, Any], response_id: str, items: list[dict[str, Any]],
                      history: list[dict[str, Any]], store: bool) -> web.StreamResponse:
        stream = reply.stream
        assert stream is not None
        translator = ChatToResponsesStream(body, response_id)
        response = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **headers})
        ttfb: float | None = None
        outcome, error = "ok", None
        try:
            await response.prepare(request)
            for ev in translator.start():
                await response.write(encode_event(ev))
            ttfb = time.perf_counter()
            async for chunk in stream:
                for ev in translator.feed(chunk):
                    await response.write(encode_event(ev))
            if stream.complete:
                final = translator.final()
                if store:
                    await self.store.aput(ctx.tenant, final, items, history)
                await response.write(encode_event(translator.completed_event(final)))
            else:
                outcome, error = "partial", stream.error or "the upstream stream ended early"
                await response.write(encode_event(translator.failed_event(error)))
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            await stream.aclose()
            self.h._record(ctx, reply, 499, "cancelled", "the client went away", started, ttfb)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return response
        except Exception as exc:
            log.exception("responses stream of request %s failed inside thrifty", ctx.request_id)
            await stream.aclose()
            error = f"thrifty failed while streaming ({exc.__class__.__name__}); see the server log for request {ctx.request_id}"
            try:
                await response.write(encode_event(translator.failed_event(error)))
                await response.write_eof()
            except (ConnectionResetError, RuntimeError):
                pass
            self.h._record(ctx, reply, 500, "error", error, started, ttfb)
            return response
        finally:
            await stream.aclose()
        self.h._record(ctx, reply, 200 if outcome == "ok" else 502, outcome, error, started, ttfb)
        return response

    # -- GET / DELETE ---------------------------------------------------------------------

    async def _find(self, request: web.Request) -> tuple[StoredResponse | None, web.Response | None]:
        principal = self._principal(request)
        if principal is None:
            return None, self._unauthorized()
        response_id = request.match_info["id"]
        stored = await self.store.aget(principal.tenant, response_id)
        if stored is None:
            exc = _not_found(response_id)
            exc.param = None
            return None, error_response("openai", exc)
        return stored, None

    async def retrieve(self, request: web.Request) -> web.Response:
        if request.query.get("stream") in ("true", "1"):
            return error_response("openai", BadRequest("replaying a stored response as a stream is not served by "
                                                       "thrifty; retrieve it without stream", "stream"))
        stored, denied = await self._find(request)
        if denied is not None:
            return denied
        assert stored is not None
        return web.Response(body=orjson.dumps(stored.response), content_type="application/json")

    async def delete(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        if principal is None:
            return self._unauthorized()
        response_id = request.match_info["id"]
        if not await self.store.adelete(principal.tenant, response_id):
            exc = _not_found(response_id)
            exc.param = None
            return error_response("openai", exc)
        return web.json_response({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: web.Request) -> web.Response:
        stored, denied = await self._find(request)
        if denied is not None:
            return denied
        assert stored is not None
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return error_response("openai", BadRequest("'limit' must be an integer from 1 to 100", "limit"))
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            return error_response("openai", BadRequest("'order' must be asc or desc", "order"))
        items = list(stored.input_items)
        if order == "desc":
            items.reverse()
        after = request.query.get("after")
        if after:
            ids = [i.get("id") for i in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        body = {"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
                "last_id": page[-1].get("id") if page else None, "has_more": len(items) > limit}
        return web.Response(body=orjson.dumps(body), content_type="application/json")


def setup(app: web.Application, gateway: Gateway) -> None:
    """Add the Responses routes, and open the response store with the application."""
    handlers = ResponsesHandlers(gateway, Handlers(gateway, app[KEYS]))
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/responses", handlers.create)
        app.router.add_get(f"{prefix}/responses/{{id}}", handlers.retrieve)
        app.router.add_delete(f"{prefix}/responses/{{id}}", handlers.delete)
        app.router.add_get(f"{prefix}/responses/{{id}}/input_items", handlers.input_items)

    async def open_store(_app: web.Application) -> None:
        await handlers.open()

    async def close_store(_app: web.Application) -> None:
        await handlers.close()

    app.on_startup.append(open_store)
    app.on_cleanup.append(close_store)

