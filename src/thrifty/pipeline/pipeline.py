"""An ordered chain of stages ending in the provider dispatch."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from thrifty.pipeline.context import Context, Handler, Reply
from thrifty.pipeline.stage import Stage, StageFactory

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

#: The order of the request path (DESIGN.md). A name maps to "module:factory"; a factory
#: returns None when its lever is not configured, and the stage then costs nothing.
#: Levers add their entry here, in request-path order: canonicalize, cache, semantic_cache,
#: dedup, compress, cap, route.
STAGES: dict[str, str] = {
    # first: it must see the body as the client sent it and the reply as the client gets it
    "shadow": "thrifty.evals.shadow:build",
    "canonicalize": "thrifty.pipeline.canonicalize:build",
    "cache": "thrifty.cache.exact:build",
    "semantic_cache": "thrifty.cache.semantic:build",
    "dedup": "thrifty.cache.dedup:build",
    "compress": "thrifty.compress.stage:build",
    "cap": "thrifty.compress.cap:build",
    "route": "thrifty.routing.stage:build",
}


class Pipeline:
    """Runs a request through `stages` in order, then `terminal` (the provider dispatch)."""

    def __init__(self, stages: Sequence[Stage], terminal: Handler) -> None:
        self.stages = list(stages)
        self.terminal = terminal
        handler: Handler = terminal
        for stage in reversed(self.stages):
            handler = functools.partial(stage.handle, next=handler)
        self._entry = handler

    def __call__(self, ctx: Context) -> Awaitable[Reply]:
        return self._entry(ctx)  # not awaited here: one coroutine frame fewer on every resume

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]


def build_stages(gateway: Gateway) -> list[Stage]:
    """Instantiate every configured stage, in request-path order."""
    stages: list[Stage] = []
    for spec in STAGES.values():
        module_name, _, attr = spec.partition(":")
        factory: StageFactory = getattr(importlib.import_module(module_name), attr)
        stage = factory(gateway)
        if stage is not None:
            stages.append(stage)
    return stages
