"""The price function the route stage uses for its counterfactual: what the same usage would
have cost on the model the client asked for.

The gateway's pricing lives in `thrifty.ledger.prices`; until a gateway provides it, the
stage falls back to the per-model `price:` override in config (USD per 1M tokens). Tests and
what-if runs inject their own function.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from thrifty.pipeline.context import Usage

if TYPE_CHECKING:
    from thrifty.config import Config

PriceFn = Callable[[str, Usage], Decimal | None]
"""(configured model name, usage) -> USD, or None when the model has no known price."""

MILLION = Decimal(1_000_000)


def config_price_fn(config: Config) -> PriceFn:
    """Prices from the models' `price:` overrides only."""

    def price(model: str, usage: Usage) -> Decimal | None:
        if not config.has_model(model):
            return None
        p = config.model(model).price
        if p is None:
            return None

        def rate(v: float | None, fallback: float) -> Decimal:
            return Decimal(str(fallback if v is None else v))

        total = (
            Decimal(usage.input_tokens) * rate(p.input, p.input)
            + Decimal(usage.cache_read_tokens) * rate(p.cache_read, p.input)
            + Decimal(usage.cache_write_tokens) * rate(p.cache_write, p.input)
            + Decimal(usage.cache_write_1h_tokens) * rate(p.cache_write_1h, p.input)
            + Decimal(usage.output_tokens) * rate(p.output, p.output)
        )
        return total / MILLION

    return price


def gateway_price_fn(config: Config) -> PriceFn:
    """The gateway's pricing module when it is there, else the config overrides."""
    try:
        from thrifty.ledger import prices  # type: ignore[attr-defined]
    except ImportError:
        return config_price_fn(config)
    for attr in ("price_fn", "model_price_fn"):
        factory = getattr(prices, attr, None)
        if callable(factory):
            fn: PriceFn = factory(config)
            return fn
    return config_price_fn(config)
