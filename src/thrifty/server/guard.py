"""Who may see the observability routes: admin keys for the dashboard, stats and metrics.

A browser cannot add an Authorization header when it opens /dashboard, so besides
`Authorization: Bearer` and `x-api-key` the key is also read from the `thrifty_key` cookie,
which `/dashboard?key=...` sets (HttpOnly, SameSite=Strict) before redirecting to a URL
without the key in it.
"""

from __future__ import annotations

from aiohttp import web

from thrifty.server.app import KEYS, error_response
from thrifty.server.auth import Principal, presented_key

COOKIE = "thrifty_key"


def principal_of(request: web.Request) -> Principal | None:
    """The principal of the request's key (header or cookie); anonymous admin when keys are off."""
    keys = request.app[KEYS]
    if not keys.enabled:
        return keys.lookup(None)
    presented = presented_key(request.headers.get("Authorization"), request.headers.get("x-api-key"))
    return keys.lookup(presented or request.cookies.get(COOKIE))


def require_admin(request: web.Request) -> web.Response | None:
    """None when the request carries an admin key (or keys are off); else the 401/403 to send."""
    principal = principal_of(request)
    if principal is None:
        return error_response("openai", 401, "this page needs an admin key: send 'Authorization: Bearer <key>' "
                              "or open /dashboard?key=<key> once", code="invalid_api_key")
    if not principal.admin:
        return error_response("openai", 403, f"the key {principal.name!r} is not an admin key")
    return None


def require_key(request: web.Request) -> tuple[Principal | None, web.Response | None]:
    """The principal of any valid key, or the 401 to send."""
    principal = principal_of(request)
    if principal is None:
        return None, error_response("openai", 401, "missing or invalid thrifty key", code="invalid_api_key")
    return principal, None
