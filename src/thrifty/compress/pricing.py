"""What a saved input token is worth: the requested model's uncached input rate.

Levers take an `InputPrice` function so that tests and what-if tools can price savings
their own way; the default asks the ledger's pricer (config override, else the
genai-prices catalog) for the model the client asked for, at the request's size (some
models price long prompts higher). An unknown model is priced at $0: a saving is never
invented.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from thrifty.ledger.prices import pricer
from thrifty.types import Context

#: USD per input token of the model the client asked for, given the prompt's token count.
InputPrice = Callable[[Context, int], Decimal]


def requested_input_price(ctx: Context, total_input: int = 0) -> Decimal:
    """The requested model's uncached input price per token (0 for an unconfigured model)."""
    name = ctx.requested_model or str(ctx.body.get("model", ""))
    if not name or not ctx.config.has_model(name):
        return Decimal(0)
    return pricer.input_rate(ctx.config.model(name), total_input)


def record_saving(ctx: Context, lever: str, tokens: int, price: InputPrice, total_input: int = 0) -> None:
    """Record `tokens` input tokens removed by `lever`, priced at the requested model's rate."""
    if tokens <= 0:
        return
    ctx.save(lever, price(ctx, total_input) * tokens, tokens)
