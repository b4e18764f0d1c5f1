"""The admin API of spend control (admin key required), and the server's `spend` extension.

    POST /v1/thrifty/keys                  create a key: the JSON of `KeySpec`; answers its material once
    GET  /v1/thrifty/keys                  list keys (never material or hash)
    GET  /v1/thrifty/keys/{ref}            one key (by id or name), with its budgets' use
    POST /v1/thrifty/keys/{ref}/revoke     revoke
    POST /v1/thrifty/keys/{ref}/rotate     new material for the same key (answers it once)
    GET  /v1/thrifty/teams                 teams;  PUT /v1/thrifty/teams/{name}: set a team's budgets/limits
    GET  /v1/thrifty/budgets               every budget and limit: use, reservation, reset time
    GET  /v1/thrifty/alerts                alert deliveries
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from thrifty.config import Config, lever_model
from thrifty.errors import BadRequest, NotFound, ThriftyError
from thrifty.gateway import Gateway
from thrifty.server.guard import admin_only, error_response
from thrifty.spend.control import SpendControl
from thrifty.spend.keys import KeySpec, TeamSpec
from thrifty.spend.settings import SpendSettings

__all__ = ["check_key_spec", "parse_spec", "setup"]


def parse_spec(model: type[Any], data: Any) -> Any:
    """Validate `data` as `model`, or raise BadRequest naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise BadRequest(f"{field}: {err['msg']}", param=field) from None


def check_key_spec(spec: KeySpec, config: Config, aliases: Callable[[str], bool] | None) -> None:
    """Refuse models that are not configured and aliases nothing resolves."""
    for i, model in enumerate(spec.models):
        if not config.has_model(model):
            known = ", ".join(m.name for m in config.models) or "none"
            raise BadRequest(f"models[{i}]: the model {model!r} is not configured (configured: {known})",
                             param=f"models.{i}")
    for i, alias in enumerate(spec.aliases):
        if aliases is None or not aliases(alias):
            raise BadRequest(f"aliases[{i}]: {alias!r} is not an alias any lever resolves (e.g. `auto` with route:)",
                             param=f"aliases.{i}")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=str), status=status, content_type="application/json")


class SpendAdmin:
    def __init__(self, control: SpendControl) -> None:
        self.control = control

    @property
    def store(self) -> Any:
        if self.control.store is None:
            raise ThriftyError("spend control is not started", status=503)
        return self.control.store

    async def _body(self, request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None

    async def create(self, request: web.Request) -> web.Response:
        spec = parse_spec(KeySpec, await self._body(request))
        check_key_spec(spec, self.control.config, self.control.gateway.aliases)
        try:
            key, material = await asyncio.to_thread(self.store.create_key, spec)
        except ValueError as exc:
            raise BadRequest(str(exc), param="name") from None
        await self.control.reload()
        return _json({**key.public(), "key": material}, 201)

    async def list(self, request: web.Request) -> web.Response:
        keys = await asyncio.to_thread(self.store.all_keys)
        return _json({"data": [k.public() for k in keys]})

    async def _key(self, request: web.Request) -> Any:
        ref = request.match_info["ref"]
        key = await asyncio.to_thread(self.store.key, ref)
        if key is None:
            raise NotFound(f"no key with id or name {ref!r}")
        return key

    async def show(self, request: web.Request) -> web.Response:
        key = await self._key(request)
        usage = [u for u in await self.control.usage() if u["scope"] == f"key:{key.key_id}"]
        return _json({**key.public(), "usage": usage})

    async def revoke(self, request: web.Request) -> web.Response:
        key = await self._key(request)
        key = await asyncio.to_thread(self.store.revoke, key.key_id)
        await self.control.reload()
        return _json(key.public())

    async def rotate(self, request: web.Request) -> web.Response:
        key = await self._key(request)
        if key.revoked_at is not None:
            raise BadRequest(f"the key {key.name!r} is revoked")
        key, material = await asyncio.to_thread(self.store.rotate, key.key_id)
        await self.control.reload()
        return _json({**key.public(), "key": material})

    async def teams(self, request: web.Request) -> web.Response:
        teams = await asyncio.to_thread(self.store.teams)
        return _json({"data": [t.public() for t in teams]})

    async def put_team(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        spec = parse_spec(TeamSpec, {**body, "name": request.match_info["name"]})
        team = await asyncio.to_thread(self.store.put_team, spec)
        await self.control.reload()
        return _json(team.public())

    async def budgets(self, request: web.Request) -> web.Response:
        return _json({"degraded": self.control.degraded, "data": await self.control.usage()})

    async def alerts(self, request: web.Request) -> web.Response:
        return _json({"data": await asyncio.to_thread(self.store.alerts)})


def _answering(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            result: web.StreamResponse = await handler(request)
            return result
        except ThriftyError as exc:
            return error_response("openai", exc)

    return run


def setup(app: web.Application, gateway: Gateway) -> None:
    """Create the gateway's spend control (started with the app) and add its admin routes."""
    settings = lever_model(gateway.config, "spend", SpendSettings)
    control = SpendControl(gateway, settings)
    gateway.services.spend = control

    async def start(_app: web.Application) -> None:
        await control.start()

    async def stop(_app: web.Application) -> None:
        await control.aclose()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    a = SpendAdmin(control)
    route = {
        ("POST", "/v1/thrifty/keys"): a.create,
        ("GET", "/v1/thrifty/keys"): a.list,
        ("GET", "/v1/thrifty/keys/{ref}"): a.show,
        ("POST", "/v1/thrifty/keys/{ref}/revoke"): a.revoke,
        ("POST", "/v1/thrifty/keys/{ref}/rotate"): a.rotate,
        ("GET", "/v1/thrifty/teams"): a.teams,
        ("PUT", "/v1/thrifty/teams/{name}"): a.put_team,
        ("GET", "/v1/thrifty/budgets"): a.budgets,
        ("GET", "/v1/thrifty/alerts"): a.alerts,
    }
    for (method, path), handler in route.items():
        app.router.add_route(method, path, admin_only(_answering(handler)))
