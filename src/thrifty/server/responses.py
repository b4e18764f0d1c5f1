"""`/v1/responses`: the OpenAI Responses API, served through the ordinary pipeline.

A request is turned into the chat-completions request that means the same
(`thrifty.protocol.responses`), earlier turns included when it names a
`previous_response_id`, and runs through the pipeline like any chat request: the levers
read that chat form, and the request leaves exactly one ledger row. When the requested
model serves the Responses API itself, the request also travels as is
(`Context.responses`: the client's body with the stored turns expanded, sent statelessly)
and the dispatcher passes it through to that model; any other model gets the chat form,
translated once more for its protocol. The answer is told apart by its shape: a `response`
object (or Responses events) is relayed under thrifty's id, a chat answer (or stream) is
turned into one. Either way a stored response is committed to the shared store before its
reply ends, so thrifty, not the upstream, holds the conversation: any replica can continue
it, and an upstream never needs to remember anything.

Routes: POST /v1/responses, GET and DELETE /v1/responses/{id},
GET /v1/responses/{id}/input_items; each also without the /v1 prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from thrifty.cache.redis_budget import start_request as start_redis_budget
from thrifty.config import lever_model
from thrifty.errors import BadRequest, NotFound, ThriftyError, Unauthorized
from thrifty.gateway import Gateway
from thrifty.protocol import responses as rp
from thrifty.protocol.errors import truncate
from thrifty.protocol.openai import finish_reason_of
from thrifty.protocol.responses_native import is_response, is_response_event
from thrifty.protocol.responses_stream import ChatToResponsesStream
from thrifty.server.app import _FORWARDED, EventWriter, Handlers, parse_tags
from thrifty.server.auth import Principal
from thrifty.server.guard import KEYS, error_response
from thrifty.server.response_store import ResponsesSettings, ResponseStore, StoredResponse
from thrifty.types import Context, EventStream, NativeResponses, Reply, SSEEvent

__all__ = ["PASS_THROUGH_OFF", "PassedStream", "ResponseTurn", "ResponsesHandlers", "setup"]

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
        self._purger: asyncio.Task[None] | None = None

    @property
    def store(self) -> ResponseStore:
        assert self._store is not None, "the response store opens when the application starts"
        return self._store

    async def open(self) -> None:
        settings = lever_model(self.gateway.config, "responses", ResponsesSettings)
        self._store = await asyncio.to_thread(ResponseStore, self.gateway.config.store, settings.ttl_days)
        self.gateway.services.plugins["responses"] = self._store
        if settings.ttl_days is not None:
            self._purger = asyncio.create_task(self._purge_every(settings.purge_interval))

    async def _purge_every(self, interval: float) -> None:
        while True:
            try:
                gone = await self.store.apurge()
                if gone:
                    log.info("responses: purged %d expired stored responses", gone)
            except Exception:  # a store that is down now may be up at the next round
                log.warning("responses: purging expired stored responses failed", exc_info=True)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None

    async def _principal(self, request: web.Request) -> Principal | None:
        return await self.h.principal(request)

    def _unauthorized(self) -> web.Response:
        return error_response("openai", Unauthorized(
            "missing or invalid thrifty key: send it as 'Authorization: Bearer <key>'", code="invalid_api_key"))

    # -- POST /v1/responses ----------------------------------------------------------------

    def _native(self, model: str) -> bool:
        """Whether `model` (a configured name) serves the Responses API itself."""
        if not self.gateway.config.has_model(model):
            return False  # an alias: the chat form, passed through only if it lands on such a model
        return self.gateway.providers[self.gateway.config.model(model).name].speaks_responses()

    async def create(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        start_redis_budget()  # this request's Redis lookups share one deadline
        principal = await self._principal(request)
        if principal is None:
            return self._unauthorized()
        native: NativeResponses | None = None
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
            if self._native(model):
                skipped: list[str] = []
                items = rp.input_items(body["input"], skipped)
                chat = rp.chat_request(body, history, items, skipped)
                upstream_model = self.gateway.config.model(model).upstream_model
                native = NativeResponses(rp.native_request(body, history, rp.reasons(upstream_model, body)),
                                         list(dict.fromkeys(skipped)), chat.get("max_completion_tokens"))
            else:
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
        if native is not None:
            ctx.responses = native
            # they rewrite or answer from the chat form, which a pass-through does not send
            ctx.levers_off = ctx.levers_off | PASS_THROUGH_OFF
        task = request.headers.get("X-Thrifty-Task")
        if task:
            ctx.task = task[:200].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if self.gateway.config.ledger.store_bodies:
            ctx.original_body = body
        store = body.get("store") is not False
        refused = await self.h.admit(ctx, principal, "openai")
        if refused is not None:
            return refused
        assert self.gateway.pipeline is not None
        reply = await self.h.run(self.gateway.pipeline, ctx, "openai", started)
        if isinstance(reply, web.Response):
            return reply
        headers = self.h._reply_headers(ctx, reply)
        turn = ResponseTurn(body, response_id, items, history, store)
        if reply.stream is not None:
            return await self._stream(request, ctx, reply, headers, started, turn)
        if not reply.ok or reply.body is None:  # an upstream error relayed as a body
            self.h._record(ctx, reply, reply.status, "error", None, started, None)
            return web.Response(body=orjson.dumps(reply.body or {}), status=reply.status,
                                content_type="application/json", headers=headers)
        try:
            if is_response(reply.body):  # passed through: the upstream's own response object
                response = turn.adopt(reply.body)
            else:
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
        return web.Response(body=orjson.dumps(turn.shown(response)), content_type="application/json", headers=headers)

    async def _stream(self, request: web.Request, ctx: Context, reply: Reply, headers: dict[str, str],
                      started: float, turn: ResponseTurn) -> web.StreamResponse:
        stream = reply.stream
        assert stream is not None
        translator = ChatToResponsesStream(turn.request, turn.response_id)
        passed: PassedStream | None = None  # set when the upstream speaks the Responses API itself

        async def body(out: EventWriter) -> tuple[str, str | None]:
            nonlocal passed
            stored = False
            first = await _first(stream)
            if first is not None and is_response_event(first):
                passed = PassedStream(turn)  # the upstream's own events, relayed
            else:
                for ev in translator.start():
                    await out.write(ev)
            async for chunk in _chain(first, stream):
                if passed is not None:
                    relayed = passed.feed(chunk)
                    if relayed is None:
                        continue
                    if passed.final is not None and turn.store and not stored:  # before the client reads its end
                        await self.store.aput(ctx.tenant, passed.final, turn.items, turn.history)
                        stored = True
                    await out.write(relayed)
                    continue
                for ev in translator.feed(chunk):
                    await out.write(ev)
            if passed is not None:
                if not stream.complete or passed.final is None:
                    error = stream.error or "the upstream stream ended early"
                    await out.write(passed.failed_event(error))
                    return "partial", error
            elif stream.complete:
                final = translator.final()
                if turn.store:
                    await self.store.aput(ctx.tenant, final, turn.items, turn.history)
                await out.write(translator.completed_event(final))
            else:
                error = stream.error or "the upstream stream ended early"
                await out.write(translator.failed_event(error))
                return "partial", error
            return "ok", None

        def failed(message: str) -> SSEEvent:
            return passed.failed_event(message) if passed is not None else translator.failed_event(message)

        return await self.h.relay_sse(request, ctx, reply, headers, started, body, failed)

    # -- GET / DELETE ---------------------------------------------------------------------

    async def _find(self, request: web.Request) -> tuple[StoredResponse | None, web.Response | None]:
        principal = await self._principal(request)
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
        include = stored.response.get("include")
        response = stored.response
        if not (isinstance(include, list) and rp.ENCRYPTED_REASONING in include):
            response = _without_encrypted(response)  # kept for the next turn, shown only when asked for
        return web.Response(body=orjson.dumps(response), content_type="application/json")

    async def delete(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
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


#: Levers that stand aside for a request passed through to a native Responses upstream:
#: they rewrite the chat form (compression) or answer from it (the semantic cache, shadow
#: reruns), and the chat form is not what is sent. The exact cache, dedup, the cap (as
#: `max_output_tokens`), routing and spend act as on any request.
PASS_THROUGH_OFF = frozenset({"compress", "semantic_cache", "shadow"})


@dataclass
class ResponseTurn:
    """One Responses request's own facts, for building and storing its answer."""

    request: dict[str, Any]
    response_id: str
    items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    store: bool

    @property
    def wants_encrypted(self) -> bool:
        include = self.request.get("include")
        return isinstance(include, list) and rp.ENCRYPTED_REASONING in include

    def adopt(self, upstream: dict[str, Any]) -> dict[str, Any]:
        """The upstream's `response` under thrifty's id, with the client's own settings
        (thrifty asked the upstream for store: false and encrypted reasoning)."""
        response = dict(upstream)
        response["id"] = self.response_id
        response["previous_response_id"] = self.request.get("previous_response_id")
        response["store"] = self.store
        response["include"] = self.request.get("include")
        if response["include"] is None:
            response.pop("include")
        return response

    def shown(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` (a response, an item or an event) as the client sees it: reasoning kept
        whole in the store, its encrypted content shown only to a client that asked."""
        if self.wants_encrypted:
            return value
        return _without_encrypted(value)


def _without_encrypted(value: dict[str, Any]) -> dict[str, Any]:
    def item(i: Any) -> Any:
        if isinstance(i, dict) and i.get("type") == "reasoning" and "encrypted_content" in i:
            return {k: v for k, v in i.items() if k != "encrypted_content"}
        return i

    out = dict(value)
    if isinstance(out.get("output"), list):
        out["output"] = [item(i) for i in out["output"]]
    if isinstance(out.get("item"), dict):
        out["item"] = item(out["item"])
    if isinstance(out.get("response"), dict):
        out["response"] = _without_encrypted(out["response"])
    return out


class PassedStream:
    """A native upstream's Responses events, relayed with thrifty's response id and the
    client's settings; `final` is the response once its last event is in."""

    def __init__(self, turn: ResponseTurn) -> None:
        self.turn = turn
        self.final: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None
        self.sequence = 0

    def feed(self, ev: SSEEvent) -> SSEEvent | None:
        data = ev.data
        if not isinstance(data, dict):
            return None
        data = dict(data)
        if isinstance(data.get("sequence_number"), int):
            self.sequence = data["sequence_number"] + 1
        if isinstance(data.get("response"), dict):
            data["response"] = self.turn.adopt(data["response"])
            self.last = data["response"]
            if data.get("type") in ("response.completed", "response.incomplete"):
                self.final = data["response"]
        return SSEEvent(event=ev.event or str(data.get("type") or "") or None, data=self.turn.shown(data))

    def failed_event(self, message: str) -> SSEEvent:
        response = {**(self.last or self.turn.adopt({"object": "response", "output": []})), "status": "failed",
                     "error": {"code": "server_error", "message": message}}
        data = {"type": "response.failed", "sequence_number": self.sequence, "response": self.turn.shown(response)}
        return SSEEvent(event="response.failed", data=data)


async def _first(stream: EventStream) -> SSEEvent | None:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


async def _chain(first: SSEEvent | None, stream: EventStream) -> AsyncIterator[SSEEvent]:
    if first is not None:
        yield first
        async for ev in stream:
            yield ev


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

