"""The small parts of the API surface that SDKs and browsers expect of any gateway.

- `GET /v1/models/{id}`: both SDKs' `models.retrieve` (the Anthropic shape when the request
  carries `anthropic-version`, as `/v1/models` does).
- Every OpenAI route also without the `/v1` prefix, for clients given a base URL without it.
- CORS, configured by the `cors:` section, so a browser app may call thrifty directly:

      cors:
        allow_origins: ["https://app.example.com"]   # or ["*"]; none by default
        allow_headers: ["*"]                          # "*": whatever the preflight asks for
        max_age: 600

  A preflight (`OPTIONS`) is answered 204 on every route whatever the origin, listing the
  methods the path serves; the `Access-Control-Allow-*` headers are added only for an
  allowed origin, on the preflight and on every answer (streams included).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from thrifty.config import lever_model
from thrifty.errors import NotFound, Unauthorized
from thrifty.gateway import Gateway
from thrifty.protocol.errors import truncate
from thrifty.server.app import Handlers
from thrifty.server.guard import KEYS, PREFLIGHT, error_response
from thrifty.types import Wire

__all__ = ["CorsSettings", "setup"]

#: Headers a browser client may read from an answer.
EXPOSED = "X-Thrifty-Request-Id, X-Thrifty-Model, X-Thrifty-Cache, Retry-After"


class CorsSettings(BaseModel):
    """The `cors:` config section."""

    model_config = ConfigDict(extra="forbid")

    allow_origins: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    max_age: int = Field(default=600, ge=0)
    allow_credentials: bool = False


class Surface:
    def __init__(self, gateway: Gateway, handlers: Handlers, cors: CorsSettings) -> None:
        self.gateway = gateway
        self.h = handlers
        self.cors = cors

    async def retrieve_model(self, request: web.Request) -> web.Response:
        wire: Wire = "anthropic" if "anthropic-version" in request.headers else "openai"
        if await self.h.principal(request) is None:
            return error_response(wire, Unauthorized("missing or invalid thrifty key", code="invalid_api_key"))
        name = request.match_info["id"]
        if not self.gateway.config.has_model(name):
            known = ", ".join(m.name for m in self.gateway.config.models) or "none"
            return error_response(wire, NotFound(f"the model {truncate(name)!r} is not configured in thrifty "
                                                 f"(configured: {known})", param="model", code="model_not_found"))
        model = self.gateway.config.model(name)
        body: dict[str, Any]
        if wire == "anthropic":
            body = {"type": "model", "id": model.name, "display_name": model.name, "created_at": "1970-01-01T00:00:00Z"}
        else:
            body = {"id": model.name, "object": "model", "created": 0, "owned_by": model.provider}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    # -- CORS ---------------------------------------------------------------------------

    def _allowed(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in self.cors.allow_origins:
            return origin if self.cors.allow_credentials else "*"
        return origin if origin in self.cors.allow_origins else None

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = self._allowed(request.headers.get("Origin"))
        if origin is None:
            return {}
        headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED}
        if origin != "*":
            headers["Vary"] = "Origin"
        if self.cors.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    async def preflight(self, request: web.Request) -> web.Response:
        methods = sorted(await _methods_of(request))
        headers = {"Allow": ", ".join([*methods, "OPTIONS"])}
        allowed = self.cors_headers(request)
        if allowed:
            asked = request.headers.get("Access-Control-Request-Headers", "")
            headers.update(allowed)
            headers["Access-Control-Allow-Methods"] = ", ".join([*methods, "OPTIONS"])
            headers["Access-Control-Allow-Headers"] = asked if self.cors.allow_headers == ["*"] else ", ".join(
                self.cors.allow_headers)
            headers["Access-Control-Max-Age"] = str(self.cors.max_age)
        return web.Response(status=204, headers=headers)


async def _methods_of(request: web.Request) -> set[str]:
    """The methods served at the request's path."""
    methods: set[str] = set()
    for resource in request.app.router.resources():
        match, allowed = await resource.resolve(request)
        methods |= set(allowed)
        if match is not None:
            methods.add(match.route.method)
    return methods - {"HEAD", "OPTIONS", "*"}


def setup(app: web.Application, gateway: Gateway) -> None:
    """Add model retrieval, the routes without /v1, and CORS."""
    surface = Surface(gateway, Handlers(gateway, app[KEYS]), lever_model(gateway.config, "cors", CorsSettings))
    h = surface.h
    app.router.add_get("/v1/models/{id}", surface.retrieve_model)
    app.router.add_get("/models/{id}", surface.retrieve_model)
    app.router.add_get("/models", h.models)
    app.router.add_post("/messages", h.anthropic_messages)
    app.router.add_post("/messages/count_tokens", h.count_tokens)

    app[PREFLIGHT] = surface.preflight  # OPTIONS on any route: the server's 405 path asks it
    if not surface.cors.allow_origins:
        return  # no browser origin allowed: nothing to add to every response

    async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        for key, value in surface.cors_headers(request).items():
            response.headers.setdefault(key, value)

    app.on_response_prepare.append(add_cors_headers)
