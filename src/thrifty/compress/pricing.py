"""What a saved input token is worth: the requested model's input price.

Until the lead's `thrifty.ledger.prices` lands on main, levers take an `InputPrice`
function as a parameter; the default reads the model's `price.input` from config
(USD per 1M tokens) and treats an unpriced model as free, so a saving is never invented.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from thrifty.pipeline.context import Context

#: USD per input token of the model the client asked for.
InputPrice = Callable[[Context], Decimal]

_MILLION = Decimal(1_000_000)


def config_input_price(ctx: Context) -> Decimal:
    """The requested model's configured input price per token, or 0 when it has none."""
    name = ctx.requested_model or str(ctx.body.get("model", ""))
    if not name or not ctx.config.has_model(name):
        return Decimal(0)
    price = ctx.config.model(name).price
    if price is None:
        return Decimal(0)
    return Decimal(str(price.input)) / _MILLION


def record_saving(ctx: Context, lever: str, tokens: int, price: InputPrice) -> None:
    """Record `tokens` input tokens removed by `lever`, priced at the requested model's rate."""
    if tokens <= 0:
        return
    ctx.save(lever, price(ctx) * tokens, tokens)
