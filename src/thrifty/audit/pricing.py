"""Per-token rates for logs that carry no cost, and for pricing the levers' what-ifs.

The audit needs a model's rates (input, cached input, output), not just a total, because
each lever changes a different part of the bill. `Rates` are looked up once per model name
and memoised, so pricing a million rows costs a dict lookup each. The lookup function is
injectable (`RateFn`); the default is thrifty.ledger.prices (genai-prices, offline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def _provider_of(model: str) -> str:
    m = model.lower()
    if m.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding")):
        return "openai"
    if m.startswith("claude"):
        return "anthropic"
    return ""


def catalog_rates(model: str) -> Rates | None:
    """Rates for `model` from thrifty's price catalog (genai-prices), or None when unknown."""
    from thrifty.ledger.prices import catalog_rates as lookup

    name = model.split("/", 1)[1] if "/" in model else model
    try:
        rates = lookup(name, _provider_of(name), None)
    except Exception:  # an odd model name must not stop an audit
        return None
    if rates is None:
        return None
    return Rates(
        input=float(rates.input.base) / MILLION,
        output=float(rates.output.base) / MILLION,
        cache_read=float(rates.cache_read.base) / MILLION,
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
