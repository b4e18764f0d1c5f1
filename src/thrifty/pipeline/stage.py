"""The stage interface: each cost lever is one stage around the rest of the pipeline.

A stage is middleware. It may answer on its own (a cache hit), rewrite `ctx.body` and call
`next` (compression, routing), or call `next` and look at the reply (a cache storing what it
got). Stages are ordered by `Pipeline` and never know about each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from thrifty.pipeline.context import Context, Handler, Reply

if TYPE_CHECKING:
    from thrifty.gateway import Gateway


@runtime_checkable
class Stage(Protocol):
    """One lever. `name` is the key of its section in config and of its saving in the ledger."""

    name: str

    async def handle(self, ctx: Context, next: Handler) -> Reply: ...


class StageFactory(Protocol):
    """Builds a stage for a gateway; returns None when the lever is off on every route.

    The factory reads its settings with `thrifty.config.lever_model(gateway.config, ...)`
    and may keep `gateway` to call models (`gateway.call_model`) or reach shared services.
    """

    def __call__(self, gateway: Gateway) -> Stage | None: ...
