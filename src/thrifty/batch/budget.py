"""The hook between the batch lane and spend control (budgets).

A job reserves its worst case at submission against the key's budgets and settles line by
line; when it ends, what was reserved and not spent is released. The lane does not know how
budgets are kept: it calls whatever object a budgets extension registers as
`gateway.services.plugins["budgets"]`, if it has these methods (a `BudgetHook`). With none
registered, nothing is reserved.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from thrifty.ledger.prices import pricer
from thrifty.ledger.tokens import estimate_request_tokens
from thrifty.types import Wire

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

__all__ = ["BudgetHook", "budget_hook", "worst_case"]

#: Output tokens assumed for a line that sets no max_tokens (its worst case).
DEFAULT_MAX_OUTPUT = 4096


@runtime_checkable
class BudgetHook(Protocol):
    async def reserve(self, *, job_id: str, key_name: str | None, tenant: str, amount: Decimal) -> None:
        """Reserve `amount` USD for the job, or raise a `ThriftyError` (e.g. 429) to refuse it."""

    async def settle(self, *, job_id: str, line: int, cost: Decimal) -> None:
        """One line of the job cost `cost` USD (move it from reserved to spent)."""

    async def release(self, *, job_id: str) -> None:
        """The job ended: release what is reserved and not spent."""


def budget_hook(gateway: Gateway) -> BudgetHook | None:
    hook: Any = gateway.services.plugins.get("budgets")
    return hook if isinstance(hook, BudgetHook) else None


def worst_case(gateway: Gateway, wire: Wire, body: dict[str, Any]) -> Decimal:
    """The most one line can cost at list price: its input and its max output tokens."""
    from thrifty.types import Usage

    model = str(body.get("model", ""))
    if not gateway.config.has_model(model):
        return Decimal(0)  # an alias (auto, tier:...): the route lever decides; priced when settled
    cfg = gateway.config.model(model)
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_OUTPUT
    usage = Usage(input_tokens=estimate_request_tokens(wire, body), output_tokens=int(limit))
    return pricer.cost(cfg, usage)
