"""A lever that upper-cases the last user turn and records a (made-up) saving.

It shows the whole lever contract: a name, a settings model, `handle`. It never checks
whether it is on: the pipeline does that (config, route overrides, shadow evaluation).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from thrifty.pipeline.lever import Lever
from thrifty.types import Context, Handler, Reply


class ShoutSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Recorded as this lever's saving on every request it touches, in USD.
    saving: float = 0.0


class ShoutLever(Lever[ShoutSettings]):
    name = "shout"
    Settings = ShoutSettings
    #: Where it runs on the request path: right after the exact cache.
    place_after = "cache"

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        messages = ctx.body.get("messages") or []
        if messages and isinstance(messages[-1].get("content"), str):
            last = {**messages[-1], "content": messages[-1]["content"].upper()}
            ctx.body = {**ctx.body, "messages": [*messages[:-1], last]}
        settings = self.settings(ctx.traffic)
        ctx.save(self.name, Decimal(str(settings.saving)))
        return await next(ctx)
