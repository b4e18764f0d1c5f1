"""`/dashboard`: a live page of spend, savings, cache, routing, latency and errors.

The page is static HTML + JS from the package (`server/static/`), with Chart.js served from
the same place (no CDN); it polls `GET /v1/thrifty/stats?since=...` every `refresh_s`
seconds. Both need an admin key when keys are configured (see `guard`).

Config (`dashboard:` section): `enabled` (true), `refresh_s` (10), `window` (default time
window, "24h"), `stats_cache_s` (5: how long one stats answer is shared).
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from thrifty.config import lever_model
from thrifty.gateway import Gateway
from thrifty.server.guard import COOKIE, error_response, require_admin
from thrifty.server.stats import collect

#: Files the dashboard may fetch from the package's static folder, and their types.
STATIC = {
    "chart.umd.js": "application/javascript",
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
    "plan.js": "application/javascript",
}


class DashboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    refresh_s: float = Field(default=10.0, ge=1.0, le=3600.0)
    window: str = "24h"
    #: Seconds a computed /v1/thrifty/stats answer is reused for the same `since` (each one
    #: scans the window: about 2.6 s for 200,000 rows on SQLite), so open tabs share it.
    stats_cache_s: float = Field(default=5.0, ge=0.0, le=3600.0)


def _static(name: str) -> bytes:
    return resources.files("thrifty.server").joinpath(f"static/{name}").read_bytes()


def setup(app: web.Application, gateway: Gateway) -> None:
    settings = lever_model(gateway.config, "dashboard", DashboardSettings)
    if not settings.enabled:
        return
    cache: dict[str, bytes] = {}
    answers: dict[str, tuple[float, bytes]] = {}

    async def page(request: web.Request) -> web.StreamResponse:
        key = request.query.get("key")
        if key is not None:
            # Trade the key in the URL for a cookie, then drop it from the address bar.
            response = web.HTTPSeeOther("/dashboard")
            response.set_cookie(COOKIE, key, httponly=True, samesite="Strict", path="/")
            raise response
        denied = require_admin(request)
        if denied is not None:
            return denied
        html = _static("dashboard.html").decode()
        config = orjson.dumps({"refresh_s": settings.refresh_s, "window": settings.window}).decode()
        html = html.replace("/*DASHBOARD_CONFIG*/null", config)
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = STATIC.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        if name not in cache:
            cache[name] = await asyncio.to_thread(_static, name)
        return web.Response(body=cache[name], content_type=kind, headers={"Cache-Control": "max-age=3600"})

    async def stats(request: web.Request) -> web.StreamResponse:
        denied = require_admin(request)
        if denied is not None:
            return denied
        from thrifty.ledger.spend import parse_since

        try:
            since = parse_since(request.query.get("since") or settings.window)
        except ValueError as exc:
            return error_response("openai", 400, str(exc), param="since")
        ledger = gateway.ledger
        if ledger is None:
            return error_response("openai", 503, "the ledger is not open yet")
        window = request.query.get("since") or settings.window
        hit = answers.get(window)
        now = time.monotonic()
        if hit is not None and now - hit[0] < settings.stats_cache_s:
            return web.Response(body=hit[1], content_type="application/json", headers=_NO_STORE)
        await asyncio.to_thread(ledger.flush, 2.0)
        body = orjson.dumps(await asyncio.to_thread(collect, ledger.store, since))
        if len(answers) > 64:
            answers.clear()
        answers[window] = (now, body)
        return web.Response(body=body, content_type="application/json", headers=_NO_STORE)

    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/v1/thrifty/stats", stats)


_NO_STORE = {"Cache-Control": "no-store"}
