"""The dashboard's Plan page: sliders for the workload and levers, the bill, the waterfall, GPUs.

`GET /dashboard/plan` serves the page (static HTML + JS from `server/static/`, Chart.js from the
package); every slider change posts the workload to `POST /v1/thrifty/plan`, which runs the same
planner as `thrifty plan` and answers its JSON. "Use my traffic" reads the gateway's own ledger
through `GET /v1/thrifty/plan/traffic`. All of it needs an admin key, like the dashboard.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from thrifty.gateway import Gateway
from thrifty.planner.catalog import load_catalog
from thrifty.planner.plan import make_plan
from thrifty.planner.workload import PlanError, workload_from
from thrifty.server.app import error_response
from thrifty.server.guard import COOKIE, require_admin

#: API models offered in the page's lists (any model genai-prices knows can be typed in).
API_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "gpt-4.1", "gpt-4.1-mini", "o3-mini",
              "claude-3-5-sonnet-latest", "claude-3-5-haiku-latest", "gemini-1.5-pro", "gemini-1.5-flash"]  # fmt: skip

_NO_STORE = {"Cache-Control": "no-store"}


def _plan_json(body: dict[str, Any]) -> bytes:
    plan = make_plan(workload_from({**body, "source": body.get("source") or "dashboard"}))
    return orjson.dumps(plan.to_dict())


def _traffic_fields(location: str) -> dict[str, Any]:
    from thrifty.planner.traffic import measure

    t = measure(location)
    return {"summary": t.summary(), "workload": t.workload_fields()}


def _page() -> str:
    return resources.files("thrifty.server").joinpath("static/plan.html").read_text()


def setup(app: web.Application, gateway: Gateway) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        key = request.query.get("key")
        if key is not None:
            response = web.HTTPSeeOther("/dashboard/plan")
            response.set_cookie(COOKIE, key, httponly=True, samesite="Strict", path="/")
            raise response
        denied = require_admin(request)
        if denied is not None:
            return denied
        cat = load_catalog()
        config = {
            "api_models": API_MODELS, "open_models": {k: m.name for k, m in cat.models.items()},
            "gpus": {k: g.name for k, g in cat.gpus.items()}, "catalog_as_of": cat.as_of,
        }  # fmt: skip
        html = await asyncio.to_thread(_page)
        html = html.replace("/*PLAN_CONFIG*/null", orjson.dumps(config).decode())
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def plan(request: web.Request) -> web.StreamResponse:
        denied = require_admin(request)
        if denied is not None:
            return denied
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response("openai", 400, "the body must be a JSON workload")
        if not isinstance(body, dict):
            return error_response("openai", 400, "the body must be a JSON object (a workload)")
        try:
            answer = await asyncio.to_thread(_plan_json, body)
        except (PlanError, KeyError) as exc:
            return error_response("openai", 400, str(exc).strip("'\""))
        return web.Response(body=answer, content_type="application/json", headers=_NO_STORE)

    async def traffic(request: web.Request) -> web.StreamResponse:
        denied = require_admin(request)
        if denied is not None:
            return denied
        if gateway.ledger is None:
            return error_response("openai", 503, "the ledger is not open yet")
        await asyncio.to_thread(gateway.ledger.flush, 2.0)
        try:
            found = await asyncio.to_thread(_traffic_fields, gateway.config.store)
        except Exception as exc:  # a store that cannot be read: say so, do not guess
            return error_response("openai", 503, f"cannot read the ledger: {exc}")
        if not found["summary"]["requests"]:
            return error_response("openai", 404, "the ledger has no successful requests yet")
        return web.Response(body=orjson.dumps(found), content_type="application/json", headers=_NO_STORE)

    app.router.add_get("/dashboard/plan", page)
    app.router.add_post("/v1/thrifty/plan", plan)
    app.router.add_get("/v1/thrifty/plan/traffic", traffic)


__all__ = ["API_MODELS", "setup"]
