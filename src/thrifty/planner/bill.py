"""The API bill of a workload, and what each lever takes off it (the savings waterfall).

Prices come from genai-prices (the same offline catalog the ledger uses) unless the workload
gives its own. Levers apply in a fixed order, each to what the previous ones left: the exact or
semantic cache answers a share for nothing; routing sends a share of the rest to a cheaper model;
compression removes a share of input tokens; the output cap a share of output tokens; the batch
share is billed at the batch discount. Order matters (a cached request is not compressed), so the
waterfall's bars add up to the difference between the first and the last bill.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from thrifty.planner.workload import PlanError, Workload


@dataclass(frozen=True)
class Rates:
    input: float  # USD per 1M tokens
    output: float
    source: str


def api_rates(model: str, provider: str | None = None) -> Rates:
    """Base (non-tiered) USD per 1M input and output tokens of an API model, from genai-prices."""
    from thrifty.ledger.prices import catalog_rates

    found = catalog_rates(model, provider or "", None)
    if found is None:
        raise PlanError(f"genai-prices has no price for model {model!r}; give input_price and output_price")
    return Rates(float(found.input.base), float(found.output.base), found.source)


@dataclass
class Step:
    lever: str
    saved: float  # USD per month
    bill_after: float
    note: str = ""


@dataclass
class Bill:
    """USD per month on the API, before and after the lever stack."""

    model: str
    rates: Rates | None
    base: float
    steps: list[Step] = field(default_factory=list)
    #: what reaches a model after the levers (a self-hosted model serves this)
    requests_per_month: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0

    @property
    def final(self) -> float:
        return self.steps[-1].bill_after if self.steps else self.base

    @property
    def saved(self) -> float:
        return self.base - self.final

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "rates": asdict(self.rates) if self.rates else None, "base": self.base,
            "final": self.final, "saved": self.saved, "steps": [asdict(s) for s in self.steps],
            "requests_per_month": self.requests_per_month, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }  # fmt: skip


def api_bill(w: Workload) -> Bill:
    """The monthly API bill of `w` with no lever, then after each lever in turn."""
    lv = w.levers
    n = w.requests_per_month
    if w.price_per_request is not None:
        bill = Bill(w.model, None, n * w.price_per_request)
        current = bill.base
        na = "not computable from a per-request price"
        for name, saved, note in (
            ("cache", current * lv.cache_hit_rate, ""),
            ("route", 0.0, na if lv.routed_share else ""),
            ("compress", 0.0, na if lv.compression else ""),
            ("cap", 0.0, na if lv.output_cap else ""),
        ):
            current -= saved
            bill.steps.append(Step(name, saved, current, note))
        saved = current * lv.batch_share * lv.batch_discount
        bill.steps.append(Step("batch", saved, current - saved))
        bill.requests_per_month = n * (1 - lv.cache_hit_rate)
        bill.input_tokens, bill.output_tokens = w.input_tokens, w.output_tokens
        return bill

    rates = Rates(w.input_price, w.output_price, "workload") if w.input_price is not None and \
        w.output_price is not None else api_rates(w.model, w.provider)  # fmt: skip
    i_cost = n * w.input_tokens * rates.input / 1e6
    o_cost = n * w.output_tokens * rates.output / 1e6
    bill = Bill(w.model, rates, i_cost + o_cost)

    def step(lever: str, note: str = "") -> None:
        after = i_cost + o_cost
        before = bill.steps[-1].bill_after if bill.steps else bill.base
        bill.steps.append(Step(lever, before - after, after, note))

    kept = 1 - lv.cache_hit_rate
    i_cost, o_cost = i_cost * kept, o_cost * kept
    step("cache")
    note = ""
    if lv.routed_share > 0:
        if not lv.route_model:
            raise PlanError("levers.route_model: name the model the routed share goes to")
        target = api_rates(lv.route_model)
        r = lv.routed_share
        i_cost *= (1 - r) + r * target.input / rates.input if rates.input else 1
        o_cost *= (1 - r) + r * target.output / rates.output if rates.output else 1
        note = f"{r:.0%} to {lv.route_model} (${target.input:g}/${target.output:g} per 1M)"
    step("route", note)
    i_cost *= 1 - lv.compression
    step("compress")
    o_cost *= 1 - lv.output_cap
    step("cap")
    i_cost *= 1 - lv.batch_share * lv.batch_discount
    o_cost *= 1 - lv.batch_share * lv.batch_discount
    step("batch")
    bill.requests_per_month = n * kept
    bill.input_tokens = w.input_tokens * (1 - lv.compression)
    bill.output_tokens = w.output_tokens * (1 - lv.output_cap)
    return bill


__all__ = ["Bill", "Rates", "Step", "api_bill", "api_rates"]
