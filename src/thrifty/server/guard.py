"""Who may do what, and the one way the HTTP surface answers an error.

`require_admin` (or the `admin_only` decorator) is the one admin check of every
`/v1/thrifty/*` admin route, the dashboard and the metrics: 401 without a valid key, 403 for a
valid key that is not an admin key, both in the protocol's error shape. `error_response`
turns a `ThriftyError` (or a status and a message) into a response through
`thrifty.protocol.errors.error_body`, the one error-shape mapper.

A browser cannot add an Authorization header when it opens /dashboard, so besides
`Authorization: Bearer` and `x-api-key` the key is also read from the `thrifty_key` cookie,
which `/dashboard?key=...` sets (HttpOnly, SameSite=Strict) before redirecting to a URL
without the key in it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from thrifty.errors import Forbidden, ThriftyError, Unauthorized
from thrifty.protocol.errors import error_body, truncate
from thrifty.server.auth import KeyRing, Principal, presented_key
from thrifty.types import Wire

__all__ = [
    "COOKIE",
    "KEYS",
    "PREFLIGHT",
    "admin_only",
    "error_response",
    "principal_of",
    "require_admin",
    "require_key",
]

COOKIE = "thrifty_key"

#: Error messages are cut to this many characters (they may echo client input).
MESSAGE_LIMIT = 2000

#: The application's key ring (set by `create_app`).
KEYS = web.AppKey("keys", KeyRing)

#: Answers an OPTIONS request (a CORS preflight) on any route; set by the surface extension.
PREFLIGHT: web.AppKey[Callable[[web.Request], Awaitable[web.Response]]] = web.AppKey("preflight")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    wire: Wire,
    status_or_error: int | ThriftyError,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in the client's protocol's own shape: from a `ThriftyError`, or from a status
    and a message."""
    if isinstance(status_or_error, ThriftyError):
        exc = status_or_error
    else:
        exc = ThriftyError(message or "error", status=status_or_error, error_type=error_type, param=param, code=code)
    merged = {**exc.headers, **(headers or {})}
    if len(exc.message) > MESSAGE_LIMIT:  # never echo a client's megabyte back
        exc.message = truncate(exc.message, MESSAGE_LIMIT)
    return web.Response(body=orjson.dumps(error_body(wire, exc)), status=exc.status,
                        content_type="application/json", headers=merged or None)


def principal_of(request: web.Request) -> Principal | None:
    """The principal of the request's key (header or cookie); anonymous admin when keys are off."""
    keys = request.app[KEYS]
    if not keys.enabled:
        return keys.lookup(None)
    presented = presented_key(request.headers.get("Authorization"), request.headers.get("x-api-key"))
    return keys.lookup(presented or request.cookies.get(COOKIE))


def require_admin(request: web.Request, wire: Wire = "openai") -> web.Response | None:
    """None when the request carries an admin key (or keys are off); else the 401/403 to send."""
    principal = principal_of(request)
    if principal is None:
        return error_response(wire, Unauthorized(
            "this route needs an admin key: send 'Authorization: Bearer <key>' (or open /dashboard?key=<key> once)",
            code="invalid_api_key"))
    if not principal.admin:
        return error_response(wire, Forbidden(f"the key {principal.name!r} is not an admin key"))
    return None


def admin_only(handler: Handler) -> Handler:
    """Wrap a route handler so that it runs only for admin keys."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        denied = require_admin(request)
        if denied is not None:
            return denied
        return await handler(request)

    return guarded


def require_key(request: web.Request) -> tuple[Principal | None, web.Response | None]:
    """The principal of any valid key, or the 401 to send."""
    principal = principal_of(request)
    if principal is None:
        return None, error_response("openai", Unauthorized("missing or invalid thrifty key", code="invalid_api_key"))
    return principal, None
