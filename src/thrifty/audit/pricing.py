"""Per-token rates for logs that carry no cost, and for pricing the levers' what-ifs.

The audit needs a model's rates (input, cached input, output), not just a total, because
each lever changes a different part of the bill. `Rates` are looked up once per model name
and memoised, so pricing a million rows costs a dict lookup each. The lookup function is
injectable (`RateFn`); the default reads the genai-prices catalog (bundled, offline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token."""

    input: float
    output: float
    cache_read: float

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, input_tokens)
        return (input_tokens - cached) * self.input + cached * self.cache_read + output_tokens * self.output


RateFn = Callable[[str], Rates | None]


def catalog_rates(model: str) -> Rates | None:
    """Rates for `model` from genai-prices, or None when the catalog does not know it."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    name = model.split("/", 1)[1] if "/" in model and not model.startswith("models/") else model

    def total(usage: Usage) -> Decimal | None:
        try:
            return calc_price(usage, model_ref=name).total_price
        except Exception:  # the catalog raises LookupError and friends for unknown models
            return None

    inp = total(Usage(input_tokens=MILLION))
    out = total(Usage(output_tokens=MILLION))
    if inp is None or out is None:
        return None
    cached = total(Usage(input_tokens=MILLION, cache_read_tokens=MILLION))
    return Rates(
        input=float(inp) / MILLION,
        output=float(out) / MILLION,
        cache_read=float(cached if cached is not None else inp) / MILLION,
    )


class RateBook:
    """Memoised rates per model name, from `lookup` (default: the genai-prices catalog)."""

    def __init__(self, lookup: RateFn | None = None) -> None:
        self._lookup: RateFn = lookup or catalog_rates
        self._memo: dict[str, Rates | None] = {}

    def __call__(self, model: str) -> Rates | None:
        try:
            return self._memo[model]
        except KeyError:
            rates = self._lookup(model)
            if len(self._memo) < 10_000:
                self._memo[model] = rates
            return rates

    def unknown_models(self) -> list[str]:
        return sorted(m for m, r in self._memo.items() if r is None)
