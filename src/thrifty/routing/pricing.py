"""The price function the route stage uses for its counterfactual: what the same usage would
have cost on the model the client asked for.

It is the gateway's pricer (`thrifty.ledger.prices`: the genai-prices catalog with the config's
`price:` overrides). Tests and what-if runs may inject their own function.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from thrifty.types import Usage

if TYPE_CHECKING:
    from thrifty.config import Config

PriceFn = Callable[[str, Usage], Decimal | None]
"""(configured model name, usage) -> USD, or None when the model has no known price."""


def gateway_price_fn(config: Config) -> PriceFn:
    """Prices of configured models from the gateway's pricer; None where it knows none."""
    from thrifty.ledger.prices import pricer

    def price(model: str, usage: Usage) -> Decimal | None:
        if not config.has_model(model):
            return None
        cfg = config.model(model)
        if pricer.rates(cfg).source == "unknown":
            return None
        return pricer.cost(cfg, usage)

    return price
