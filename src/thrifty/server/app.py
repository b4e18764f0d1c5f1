"""The HTTP surface (aiohttp): OpenAI and Anthropic routes, health, spend, extensions.

Each request: authenticate, read and check the body, run the pipeline, write the answer
(JSON or SSE), then hand one row to the ledger -- whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from thrifty import plugins
from thrifty.cache.redis_budget import start_request as start_redis_budget
from thrifty.config import Config
from thrifty.errors import BadRequest, NotFound, ThriftyError, Unauthorized, UpstreamError
from thrifty.gateway import Gateway
from thrifty.ledger.rows import Ending, record_of
from thrifty.protocol.errors import error_event, truncate
from thrifty.protocol.streams import encode_event
from thrifty.server.auth import KeyRing, Principal, presented_key
from thrifty.server.guard import KEYS, PREFLIGHT, admin_only, error_response
from thrifty.server.validate import check_depth, validate_anthropic, validate_openai
from thrifty.types import Context, Handler, Reply, SSEEvent, Wire

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)

_TAG = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def parse_tags(header: str | None, metadata: Any) -> dict[str, str]:
    """Tags from `X-Thrifty-Tags: route=search,feature=summary` and string values of `metadata`."""
    tags: dict[str, str] = {}
    if isinstance(metadata, dict):
        for k in ("route", "feature", "tenant_tag"):
            v = metadata.get(k)
            if isinstance(v, str) and _TAG.match(v):
                tags[k] = v
    if header:
        for part in header.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not _TAG.match(key) or not _TAG.match(value):
                raise BadRequest(
                    f"X-Thrifty-Tags: {part!r} is not key=value (letters, digits, _.:/- up to 64 characters)"
                )
            tags[key] = value
    return tags


class Handlers:
    def __init__(self, gateway: Gateway, keys: KeyRing) -> None:
        self.gateway = gateway
        self.config: Config = gateway.config
        self.keys = keys

    # -- the two chat protocols --------------------------------------------------------

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "openai")

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "anthropic")

    async def _chat(self, request: web.Request, protocol: Wire) -> web.StreamResponse:
        started = time.perf_counter()
        start_redis_budget()  # reliability: this request's Redis lookups share one deadline
        principal = await self.principal(request)
        if principal is None:
            return error_response(protocol, Unauthorized(
                "missing or invalid thrifty key: send it as 'Authorization: Bearer <key>' or 'x-api-key'",
                code="invalid_api_key"))
        try:
            body = await self._read_json(request)
            (validate_openai if protocol == "openai" else validate_anthropic)(body)
            tags = parse_tags(request.headers.get("X-Thrifty-Tags"), body.get("metadata"))
        except BadRequest as exc:
            return error_response(protocol, exc)
        model = body["model"]
        accepts_alias = self.gateway.aliases  # e.g. `auto`, `tier:cheap` (the route lever)
        if not self.config.has_model(model) and not (accepts_alias is not None and accepts_alias(model)):
            known = ", ".join(m.name for m in self.config.models) or "none"
            return error_response(protocol, NotFound(
                f"the model {truncate(model)!r} is not configured in thrifty (configured: {known})",
                param="model", code="model_not_found"))
        ctx = Context(
            protocol=protocol,
            body=body,
            config=self.config,
            key_name=principal.name,
            tenant=principal.tenant,
            tags=tags,
            headers={k.lower(): v for k, v in request.headers.items() if k.lower() in _FORWARDED},
            requested_model=model,
        )
        task = request.headers.get("X-Thrifty-Task")
        if task:  # a header that is not UTF-8 arrives with escaped bytes, which no store can encode
            ctx.task = task[:200].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if self.config.ledger.store_bodies:
            ctx.original_body = body
        refused = await self.admit(ctx, principal, protocol)
        if refused is not None:
            return refused
        assert self.gateway.pipeline is not None
        reply = await self.run(self.gateway.pipeline, ctx, protocol, started)
        if isinstance(reply, web.Response):
            return reply
        headers = self._reply_headers(ctx, reply)
        if reply.stream is None:
            try:
                payload = orjson.dumps(reply.body)
            except orjson.JSONEncodeError as exc:  # e.g. an upstream answer nested past orjson's limit
                message = f"the answer of model {reply.served_model!r} could not be relayed: {exc}"
                self._record(ctx, reply, 502, "error", message, started, None)
                return error_response(protocol, 502, message, headers=headers)
            response = web.Response(body=payload, status=reply.status, content_type="application/json", headers=headers)
            self._record(ctx, reply, reply.status, "ok" if reply.ok else "error", None, started, None)
            return response
        return await self._stream(request, ctx, reply, headers, started)

    async def _stream(self, request: web.Request, ctx: Context, reply: Reply,
                      headers: dict[str, str], started: float) -> web.StreamResponse:
        stream = reply.stream
        assert stream is not None
        options = ctx.body.get("stream_options")  # not checked on Anthropic requests: may be anything
        hide_usage = ctx.protocol == "openai" and not (isinstance(options, dict) and options.get("include_usage"))

        async def body(out: EventWriter) -> tuple[str, str | None]:
            async for ev in stream:
                if hide_usage and _is_usage_only(ev):
                    continue
                await out.write(ev)
            if stream.error and not stream.complete:
                await out.write(_stream_error(ctx.protocol, stream.error))
                return "partial", stream.error
            return ("ok" if stream.complete else "partial"), None

        return await self.relay_sse(request, ctx, reply, headers, started, body,
                                    lambda message: _stream_error(ctx.protocol, message))

    async def relay_sse(self, request: web.Request, ctx: Context, reply: Reply, headers: dict[str, str],
                        started: float, body: Callable[[EventWriter], Awaitable[tuple[str, str | None]]],
                        failed: Callable[[str], SSEEvent]) -> web.StreamResponse:
        """Serve `reply.stream` as server-sent events, however it ends: `body` writes the events
        and says how the stream ended (ok or partial, and why); a client that goes away is
        recorded as cancelled (499); an exception inside thrifty ends the stream with the
        `failed` event of the protocol and is recorded as an error (500). Every way out closes
        the upstream stream and writes exactly one ledger row."""
        stream = reply.stream
        assert stream is not None
        response = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **headers})
        out = EventWriter(response)
        try:
            await response.prepare(request)
            outcome, error = await body(out)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            await stream.aclose()
            self._record(ctx, reply, 499, "cancelled", "the client went away", started, out.ttfb)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return response
        except Exception as exc:  # a bug, or an upstream event no translator expected: end cleanly
            log.exception("stream of request %s failed inside thrifty", ctx.request_id)
            await stream.aclose()
            message = (f"thrifty failed while streaming ({exc.__class__.__name__}); "
                       f"see the server log for request {ctx.request_id}")
            try:
                await response.write(encode_event(failed(message)))
                await response.write_eof()
            except (ConnectionResetError, RuntimeError):
                pass
            self._record(ctx, reply, 500, "error", message, started, out.ttfb)
            return response
        finally:
            await stream.aclose()
        self._record(ctx, reply, 200 if outcome == "ok" else 502, outcome, error, started, out.ttfb)
        return response

    # -- helpers -----------------------------------------------------------------------

    async def principal(self, request: web.Request) -> Principal | None:
        """Who sent `request`: a gateway key, a virtual key (looked up in the store when this
        replica has not loaded it yet), or None."""
        found = self._principal(request)
        spend = self.gateway.services.spend
        if found is None and spend is not None:
            presented = presented_key(request.headers.get("Authorization"), request.headers.get("x-api-key"))
            if spend.is_virtual(presented):
                return await spend.authenticate_fresh(presented)
        return found

    def _principal(self, request: web.Request) -> Principal | None:
        presented = presented_key(request.headers.get("Authorization"), request.headers.get("x-api-key"))
        spend = self.gateway.services.spend
        if spend is not None and spend.is_virtual(presented):  # a virtual key (thrifty keys create)
            return spend.authenticate(presented)
        if not self.keys.enabled:
            return self.keys.lookup(None)
        return self.keys.lookup(presented)

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        limit = self.config.server.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(f"request body is {request.content_length} bytes; the limit is {limit} (server.max_body_bytes)", status=413)
        try:
            if request.content.is_eof():  # the whole body is in already (the usual request): no timer
                raw = await request.read()
            else:
                async with asyncio.timeout(self.config.server.body_timeout):
                    raw = await request.read()
        except TimeoutError:
            raise BadRequest(f"the request body did not arrive within {self.config.server.body_timeout:g}s "
                             "(server.body_timeout)", status=408) from None
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest(f"request body is over the limit of {limit} bytes (server.max_body_bytes)", status=413) from None
        except Exception as exc:
            raise BadRequest(f"could not read the request body: {exc.__class__.__name__}") from None
        if len(raw) > limit:
            raise BadRequest(f"request body is over the limit of {limit} bytes (server.max_body_bytes)", status=413)
        if not raw:
            raise BadRequest("the request body is empty; send a JSON object")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"the request body is not valid UTF-8 (byte {exc.start})") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        check_depth(raw, body)
        return body

    async def admit(self, ctx: Context, principal: Principal, protocol: Wire) -> web.Response | None:
        """Spend admission (keys' models and routes, budgets, rate limits: reserve before the
        call); the refusal to answer, if any."""
        spend = self.gateway.services.spend
        if spend is None:
            return None
        try:
            await spend.admit(ctx, principal)
        except ThriftyError as exc:
            return error_response(protocol, exc, headers={"X-Thrifty-Request-Id": ctx.request_id})
        return None

    async def run(self, pipeline: Handler, ctx: Context, protocol: Wire, started: float) -> Reply | web.Response:
        """`pipeline(ctx)`, or the error response of its failure (recorded in the ledger)."""
        try:
            return await pipeline(ctx)
        except asyncio.CancelledError:  # the client left (with handler cancellation on) or the server stops
            self._record(ctx, None, 499, "cancelled", "the client went away before the answer", started, None)
            raise
        except ThriftyError as exc:
            self._record(ctx, None, exc.status, "error", exc.message, started, None)
            return error_response(protocol, exc, headers={"X-Thrifty-Request-Id": ctx.request_id})
        except Exception as exc:
            log.exception("request %s failed inside thrifty", ctx.request_id)
            self._record(ctx, None, 500, "error", f"internal error: {exc.__class__.__name__}", started, None)
            return error_response(protocol, 500, f"thrifty failed to handle this request ({exc.__class__.__name__}); see the server log for request {ctx.request_id}",
                                  headers={"X-Thrifty-Request-Id": ctx.request_id})

    def _reply_headers(self, ctx: Context, reply: Reply) -> dict[str, str]:
        headers = {k: v for k, v in reply.headers.items() if k.lower().startswith("x-thrifty-")}
        headers["X-Thrifty-Request-Id"] = ctx.request_id
        if ctx.cache_outcome:
            headers["X-Thrifty-Cache"] = ctx.cache_outcome
        if reply.served_model:
            headers["X-Thrifty-Model"] = reply.served_model
        return headers

    def _record(self, ctx: Context, reply: Reply | None, status: int, outcome: str,
                error: str | None, started: float, ttfb: float | None) -> None:
        record = record_of(ctx, reply, Ending(status, outcome, error, started, ttfb))
        spend = self.gateway.services.spend
        if spend is not None:  # settle the reservation to the actual cost, however the request ended
            spend.settle(ctx, record)
        ledger = self.gateway.ledger
        if ledger is None:
            return
        ledger.submit(record)

    # -- small routes --------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        if await self.principal(request) is None:
            return error_response("openai", 401, "missing or invalid thrifty key")
        if "anthropic-version" in request.headers:
            data = [{"type": "model", "id": m.name, "display_name": m.name, "created_at": "1970-01-01T00:00:00Z"}
                    for m in self.config.models]
            body: dict[str, Any] = {"data": data, "has_more": False,
                                    "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
        else:
            body = {"object": "list", "data": [{"id": m.name, "object": "model", "created": 0, "owned_by": m.provider}
                                               for m in self.config.models]}
        return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())

    async def count_tokens(self, request: web.Request) -> web.Response:
        """Anthropic's token counter (Claude Code calls it): the upstream's count for Anthropic
        models, an offline estimate for the others."""
        if await self.principal(request) is None:
            return error_response("anthropic", 401, "missing or invalid thrifty key")
        try:
            body = await self._read_json(request)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest("missing required field 'model'", "model")
            if not isinstance(body.get("messages"), list):
                raise BadRequest("'messages' must be an array", "messages")
        except BadRequest as exc:
            return error_response("anthropic", exc.status, exc.message)
        if not self.config.has_model(model):
            return error_response("anthropic", 404, f"the model {model!r} is not configured in thrifty")
        provider = self.gateway.providers[model]
        counter = getattr(provider, "count_tokens", None)
        if counter is not None:
            try:
                return web.json_response({"input_tokens": await counter(body, request.headers)})
            except UpstreamError as exc:
                return error_response("anthropic", exc.status, exc.message)
        from thrifty.ledger.tokens import estimate_request_tokens

        return web.json_response({"input_tokens": estimate_request_tokens("anthropic", body)})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Per dependency: ready / degraded / down; 200, 200, 503 (see thrifty.server.readiness)."""
        from thrifty.server.readiness import HTTP_STATUS, readiness

        overall, body = readiness(self.gateway)
        if self.keys.enabled:  # the details (hosts, paths, errors) are for admins only
            principal = self._principal(request)
            if principal is None or not principal.admin:
                body = {"status": overall}
        return web.json_response(body, status=HTTP_STATUS[overall])

    async def spend(self, request: web.Request) -> web.Response:
        from thrifty.ledger.spend import parse_since

        by = request.query.get("by", "model")
        try:
            since = parse_since(request.query.get("since"))
        except ValueError as exc:
            return error_response("openai", 400, str(exc), param="since")
        ledger = self.gateway.ledger
        assert ledger is not None
        await asyncio.to_thread(ledger.flush, 5.0)
        try:
            rows = await asyncio.to_thread(ledger.store.spend, by, since)
        except ValueError as exc:
            return error_response("openai", 400, str(exc), param="by")
        total = {k: sum((r[k] for r in rows), Decimal(0)) for k in ("cost", "counterfactual_cost", "saved")}
        body = {"by": by, "since": since, "rows": rows, "total": total,
                "savings_by_lever": await asyncio.to_thread(ledger.store.savings_by_lever, since)}
        return web.Response(body=orjson.dumps(body, default=str), content_type="application/json")


class EventWriter:
    """Writes events to an SSE response and notes when the first one went out (time to first byte)."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.ttfb: float | None = None

    async def write(self, event: SSEEvent) -> None:
        await self.response.write(encode_event(event))
        if self.ttfb is None:
            self.ttfb = time.perf_counter()


_FORWARDED = {"anthropic-version", "anthropic-beta", "cache-control", "user-agent", "x-thrifty-task"}


def _is_usage_only(ev: SSEEvent) -> bool:
    data = ev.data
    return isinstance(data, dict) and not data.get("choices") and bool(data.get("usage"))


def _stream_error(protocol: Wire, message: str) -> SSEEvent:
    """The event that ends a stream cut after its first byte."""
    return error_event(protocol, UpstreamError(502, message, error_type="api_error", code="upstream_stream_error"))


def served_routes(app: web.Application) -> list[str]:
    """`METHOD /path` of every API route (the /v1 ones), for the answer to an unknown route."""
    seen: dict[str, None] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "OPTIONS", "*") or not path.startswith("/v1/"):
            continue
        seen[f"{route.method} {path}"] = None
    return sorted(seen, key=lambda r: (r.split(" ", 1)[1], r))


def _no_route(request: web.Request) -> str:
    """The answer to an unknown route: what thrifty does serve (LangChain reads a bare 404
    as "model not found")."""
    return (f"no route {request.method} {request.path}; thrifty serves: "
            f"{', '.join(served_routes(request.app))}")


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown routes and wrong methods answer in the OpenAI error shape, never as HTML.

    It also counts the requests in flight (`gateway.in_flight`, the autoscaling signal on
    /metrics), which costs no extra middleware on the request path."""
    gateway = request.app[GATEWAY]
    limit = gateway.config.server.max_in_flight
    if limit is not None and gateway.in_flight >= limit and request.method == "POST":
        # Shed at the door: a replica past its capacity answers at once (the balancer or the
        # SDK's retry tries again) instead of queueing requests past their clients' timeouts.
        gateway.shed += 1
        protocol_: Wire = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        return error_response(protocol_, 503, f"thrifty is at capacity ({limit} requests in flight, "
                              "server.max_in_flight); retry in a second", code="overloaded",
                              headers={"Retry-After": "1"})
    gateway.in_flight += 1
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 405 and request.method == "OPTIONS" and PREFLIGHT in request.app:
            return await request.app[PREFLIGHT](request)  # a CORS preflight, at no cost to other requests
        protocol: Wire = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        message = {404: _no_route(request), 405: f"{request.method} is not allowed on {request.path}"}.get(
            exc.status, exc.reason)
        return error_response(protocol, exc.status, message)
    except Exception as exc:  # a bug: still answer in the protocol's shape, never aiohttp's text page
        log.exception("%s %s failed inside thrifty", request.method, request.path)
        protocol = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        return error_response(protocol, 500, f"thrifty failed to handle this request ({exc.__class__.__name__}); see the server log")
    finally:
        gateway.in_flight -= 1


def create_app(gateway: Gateway) -> web.Application:
    """The aiohttp application. The gateway is started on startup and closed on cleanup."""
    keys = KeyRing(gateway.config.server.keys)
    app = web.Application(middlewares=[_errors], client_max_size=gateway.config.server.max_body_bytes)
    app[GATEWAY] = gateway
    app[KEYS] = keys
    h = Handlers(gateway, keys)
    app.router.add_post("/v1/chat/completions", h.openai_chat)
    app.router.add_post("/chat/completions", h.openai_chat)
    app.router.add_post("/v1/messages", h.anthropic_messages)
    app.router.add_post("/v1/messages/count_tokens", h.count_tokens)
    app.router.add_get("/v1/models", h.models)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_get("/readyz", h.readyz)
    app.router.add_get("/v1/thrifty/spend", admin_only(h.spend))
    for setup in plugins.extensions():
        setup(app, gateway)

    async def on_startup(_app: web.Application) -> None:
        if gateway.pipeline is None:
            await gateway.start()

    async def on_cleanup(_app: web.Application) -> None:
        await gateway.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
