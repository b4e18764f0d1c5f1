"""Runtime lever overrides: the contract between shadow evaluation and every stage.

Shadow evaluation (`thrifty.evals.shadow`) turns a lever off for one route when its
measured quality drop crosses the route's tolerance. It does so by adding `(route, lever)`
to `gateway.state["disabled_levers"]`, a `set[tuple[str, str]]`. A shadow run that needs
"this request with lever X off" puts X in `ctx.extra["levers_off"]` (a set of names).

Every stage that can change an answer asks, before acting:

    from thrifty.evals.overrides import lever_disabled
    if lever_disabled(self.gateway, ctx, self.name):
        return await next(ctx)

The check is two set look-ups; it never blocks. The set is only ever replaced or added to
from the event loop thread, so stages may read it without a lock.
"""

from __future__ import annotations

from typing import Any

STATE_KEY = "disabled_levers"


def disabled_levers(state: dict[str, Any]) -> set[tuple[str, str]]:
    """The live set of (route, lever) pairs that are off, created on first use."""
    levers = state.get(STATE_KEY)
    if levers is None:
        levers = set()
        state[STATE_KEY] = levers
    return levers


def lever_disabled(gateway: Any, ctx: Any, lever: str) -> bool:
    """Whether `lever` must stand aside for this request (route override or shadow run)."""
    off = ctx.extra.get("levers_off")
    if off and lever in off:
        return True
    levers = gateway.state.get(STATE_KEY) if gateway is not None else None
    return levers is not None and (ctx.route, lever) in levers
