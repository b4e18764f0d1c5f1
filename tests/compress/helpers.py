"""Test helpers: a Context from YAML config and a request body, and a terminal that
records exactly what would be sent upstream."""

from __future__ import annotations

import json
from typing import Any

from thrifty.config import parse_config
from thrifty.types import Context, Reply, Wire


def make_ctx(
    config_yaml: str, body: dict[str, Any], protocol: Wire = "openai", route: str | None = None
) -> Context:
    config = parse_config(config_yaml)
    ctx = Context(protocol=protocol, body=body, config=config, requested_model=str(body.get("model", "")))
    if route:
        ctx.tags["route"] = route
    return ctx


class Recorder:
    """The end of the pipeline: serialises the body it receives, as a provider would."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, ctx: Context) -> Reply:
        self.sent.append(json.dumps(ctx.body, ensure_ascii=False).encode())
        self.bodies.append(ctx.body)
        return Reply(status=200, body={"ok": True})
