"""An ordered chain of levers ending in the provider dispatch, with the lever policy applied
by the pipeline itself (see `thrifty.pipeline.lever.guarded`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from thrifty import plugins
from thrifty.pipeline.lever import Lever, LeverOverrides, guarded
from thrifty.types import Context, Handler, Reply

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

__all__ = ["Pipeline", "build_levers"]


class Pipeline:
    """Runs a request through `levers` in order, then `terminal` (the provider dispatch).

    Every lever runs behind the pipeline's guard: off for this request, off for the traffic
    class by shadow evaluation (`overrides`) or by config, client traffic only."""

    def __init__(self, levers: Sequence[Lever[Any]], terminal: Handler, overrides: LeverOverrides | None = None) -> None:
        self.levers = list(levers)
        self.terminal = terminal
        self.overrides = overrides if overrides is not None else LeverOverrides()
        handler: Callable[[Context], Awaitable[Reply]] = terminal
        for lever in reversed(self.levers):
            handler = guarded(lever, self.overrides, handler)
        self._entry = handler

    def __call__(self, ctx: Context) -> Awaitable[Reply]:
        return self._entry(ctx)  # not awaited here: one coroutine frame fewer on every resume

    @property
    def names(self) -> list[str]:
        return [lever.name for lever in self.levers]

    def lever(self, name: str) -> Lever[Any] | None:
        return next((lever for lever in self.levers if lever.name == name), None)


def build_levers(gateway: Gateway) -> list[Lever[Any]]:
    """Every registered lever that the config enables somewhere, in request-path order."""
    registry = plugins.levers()
    built: list[Lever[Any]] = []
    for name in plugins.lever_order():
        lever = registry[name].build(gateway)
        if lever is not None:
            built.append(lever)
    return built
