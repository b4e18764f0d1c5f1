"""From a finished request to its ledger row: the money invariant in one typed place.

`Bill.of(ctx, reply)` is what a request cost (the reply's cost plus every side call made for
it) and what each lever saved; its counterfactual is *defined* as cost + the sum of savings,
so a row can never claim a saving its counterfactual does not carry. `record_of` is a pure
function of the context, the reply and how the request ended: it reads both and changes
neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from thrifty.ledger.record import LedgerRecord
from thrifty.types import Context, Reply

__all__ = ["Bill", "Ending", "record_of"]

_ZERO = Decimal(0)


@dataclass(frozen=True)
class Bill:
    """What one request cost and what each lever saved on it, in USD."""

    cost: Decimal
    savings: dict[str, Decimal]

    @property
    def saved(self) -> Decimal:
        return sum(self.savings.values(), _ZERO)

    @property
    def counterfactual(self) -> Decimal:
        """What the request would have cost with no lever: cost + every lever's saving."""
        return self.cost + self.saved

    @classmethod
    def of(cls, ctx: Context, reply: Reply | None) -> Bill:
        cost = (reply.cost if reply is not None else _ZERO) + ctx.side_cost
        return cls(cost=cost, savings=dict(ctx.savings))


@dataclass(frozen=True)
class Ending:
    """How a request ended, as the server saw it."""

    status: int
    #: ok | error | partial (a stream cut short) | cancelled (the client went away)
    outcome: str
    error: str | None = None
    #: `time.perf_counter()` when the server took the request, and at the first byte sent.
    started: float = 0.0
    ttfb: float | None = None


def record_of(ctx: Context, reply: Reply | None, end: Ending) -> LedgerRecord:
    """The ledger row of a finished request."""
    usage = reply.usage if reply is not None else None
    bill = Bill.of(ctx, reply)
    finish = _finish_reason(reply.body) if reply is not None and reply.body is not None else None
    now = time.perf_counter()
    return LedgerRecord(
        request_id=ctx.request_id,
        ts=ctx.started,
        protocol=ctx.protocol,
        requested_model=ctx.requested_model,
        served_model=(reply.served_model if reply is not None else "") or ctx.target_model or ctx.requested_model,
        provider=(reply.provider if reply is not None else "") or "",
        status=end.status,
        outcome=end.outcome,
        key_name=ctx.key_name,
        tenant=ctx.tenant,
        route=ctx.traffic,
        feature=ctx.tags.get("feature"),
        task=ctx.task,
        tags=dict(ctx.tags),
        error=end.error,
        cache=ctx.cache_outcome,
        answered_by=ctx.answered_by.value if ctx.answered_by is not None else None,
        input_tokens=usage.input_tokens if usage else 0,
        cache_read_tokens=usage.cache_read_tokens if usage else 0,
        cache_write_tokens=usage.cache_write_tokens if usage else 0,
        cache_write_1h_tokens=usage.cache_write_1h_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        usage_estimated=usage.estimated if usage else False,
        cost=bill.cost,
        counterfactual_cost=bill.counterfactual,
        savings=bill.savings,
        tokens_saved=dict(ctx.tokens_saved),
        latency_ms=(now - end.started) * 1000,
        ttfb_ms=(end.ttfb - end.started) * 1000 if end.ttfb is not None else None,
        stream=ctx.stream,
        finish_reason=finish,
        extra=ledger_extra(ctx),
        request_body=ctx.original_body,
        response_body=reply.body if (reply is not None and ctx.original_body is not None) else None,
    )


def ledger_extra(ctx: Context) -> dict[str, Any]:
    """The row's `extra` column: the ledger-only facts, plus the typed decisions that the
    reports read (route decision, escalations, dedup role, notes)."""
    extra = dict(ctx.extra)
    if ctx.route_decision is not None:
        extra["route"] = ctx.route_decision.to_dict()
        if ctx.route_decision.escalations:
            extra["escalations"] = list(ctx.route_decision.escalations)
    if ctx.dedup_role is not None:
        extra["dedup"] = ctx.dedup_role
    if ctx.notes:
        extra["notes"] = list(ctx.notes)
    return extra


def _finish_reason(body: dict[str, Any]) -> str | None:
    choices = body.get("choices")
    if isinstance(choices, list) and choices:
        reason = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
        return reason if isinstance(reason, str) else None
    reason = body.get("stop_reason")
    return reason if isinstance(reason, str) else None
