"""Cache invalidation: `DELETE /v1/thrifty/cache` on the server, and `thrifty cache clear`.

Both select entries the same way: one `key` (the hex key the ledger keeps in the row's
`extra.cache_key`; the reply also carries it as `X-Thrifty-Cache-Key` in `Reply.headers`),
or a `route`, `tag`s
(key=value, all must match) and/or a `tenant`, or `all`. A request that selects nothing is
refused rather than read as "everything". The HTTP route needs an admin key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from thrifty.gateway import Gateway


class SelectionError(ValueError):
    """The invalidation request selects nothing, or is malformed."""


@dataclass
class Selection:
    key: str | None = None
    route: str | None = None
    tenant: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    everything: bool = False

    def describe(self) -> str:
        if self.key:
            return f"key {self.key}"
        if self.everything:
            return "everything"
        parts = [f"route={self.route}"] if self.route else []
        parts += [f"tenant={self.tenant}"] if self.tenant else []
        parts += [f"tag {k}={v}" for k, v in self.tags.items()]
        return ", ".join(parts)


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise SelectionError(f"tag {text!r} is not key=value")
    return key.strip(), value.strip()


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


def selection_from(data: dict[str, Any], tag_list: list[str]) -> Selection:
    """A Selection from JSON/query fields: key, route, tenant, tag (k=v) or tags ({k: v}), all."""
    tags: dict[str, str] = {}
    raw_tags = data.get("tags")
    if raw_tags is not None:
        if not isinstance(raw_tags, dict) or not all(isinstance(v, str) for v in raw_tags.values()):
            raise SelectionError("tags must be an object of string values, e.g. {\"feature\": \"faq\"}")
        tags.update({str(k): v for k, v in raw_tags.items()})
    for text in tag_list:
        k, v = parse_tag(text)
        tags[k] = v
    for name in ("key", "route", "tenant"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise SelectionError(f"{name} must be a string")
    selection = Selection(
        key=data.get("key") or None,
        route=data.get("route") or None,
        tenant=data.get("tenant") or None,
        tags=tags,
        everything=_truthy(data.get("all")),
    )
    chosen = [selection.key is not None, selection.everything, bool(selection.route or selection.tenant or tags)]
    if sum(chosen) == 0:
        raise SelectionError("say what to invalidate: key, route, tag (key=value), tenant, or all=true")
    if sum(chosen) > 1:
        raise SelectionError("use one of: key; route/tag/tenant; all")
    return selection


async def invalidate(gateway: Gateway, selection: Selection) -> int:
    """Delete the selected entries from every cache store the configuration names."""
    from thrifty.cache.exact import ExactCacheStage, StoreSet

    stage = gateway.services.cache
    stores = stage.stores if isinstance(stage, ExactCacheStage) else StoreSet(gateway.config)
    try:
        removed = await stores.invalidate(
            key=selection.key,
            route=selection.route,
            tags=selection.tags or None,
            tenant=selection.tenant,
            everything=selection.everything,
        )
        # The semantic cache's entries are kept per tenant (they record no route or tag).
        index = gateway.services.semantic_index
        if index is not None and selection.everything:
            removed += index.clear()
        elif index is not None and selection.tenant and not (selection.key or selection.route or selection.tags):
            removed += index.delete(selection.tenant)
        return removed
    finally:
        if stores is not getattr(stage, "stores", None):
            await stores.close()


async def delete_cache(request: web.Request) -> web.Response:
    """`DELETE /v1/thrifty/cache` (admin keys only, see `setup`)."""
    from thrifty.server.app import GATEWAY
    from thrifty.server.guard import error_response

    data: dict[str, Any] = {k: v for k, v in request.query.items() if k != "tag"}
    tag_list = request.query.getall("tag", [])
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return error_response("openai", 400, f"the request body is not valid JSON: {exc}")
            if not isinstance(body, dict):
                return error_response("openai", 400, "the request body must be a JSON object")
            data.update(body)
            if isinstance(body.get("tag"), str):
                tag_list = [*tag_list, body["tag"]]
                data.pop("tag")
    try:
        selection = selection_from(data, tag_list)
    except SelectionError as exc:
        return error_response("openai", 400, str(exc))
    deleted = await invalidate(request.app[GATEWAY], selection)
    return web.json_response({"deleted": deleted, "selected": selection.describe()})


def setup(app: web.Application, gateway: Gateway) -> None:
    """Add `DELETE /v1/thrifty/cache` (the server's EXTENSIONS entry)."""
    from thrifty.server.guard import admin_only

    app.router.add_delete("/v1/thrifty/cache", admin_only(delete_cache))
