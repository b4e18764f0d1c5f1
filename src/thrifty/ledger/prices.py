"""Prices: the genai-prices catalog (offline), overridable per model in config, in Decimal.

Rates are resolved once per model and kept, so pricing a request is a few Decimal
multiplications on the hot path. Cache reads, 5-minute and 1-hour cache writes, reasoning
tokens (billed as output) and the 50% batch discount are priced as the providers bill them;
tiered ("long context") prices switch on the request's total input tokens.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from thrifty.config import DEFAULT_BASE_URLS, ModelConfig
from thrifty.types import Usage

log = logging.getLogger(__name__)

MTOK = Decimal(1_000_000)
ZERO = Decimal(0)
BATCH_DISCOUNT = Decimal("0.5")


@dataclass(frozen=True)
class Tiered:
    """A per-1M-token rate that changes once total input passes each tier's start (cliff)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def at(self, total_input: int) -> Decimal:
        rate = self.base
        for start, price in self.tiers:
            if total_input > start:
                rate = price
        return rate


@dataclass(frozen=True)
class Rates:
    """USD per 1M tokens for one model. `source` says where they came from."""

    input: Tiered
    output: Tiered
    cache_read: Tiered
    cache_write: Tiered
    cache_write_1h: Tiered
    source: str

    def cost(self, usage: Usage, *, batch: bool = False) -> Decimal:
        n = usage.total_input_tokens
        total = (
            usage.input_tokens * self.input.at(n)
            + usage.cache_read_tokens * self.cache_read.at(n)
            + usage.cache_write_tokens * self.cache_write.at(n)
            + usage.cache_write_1h_tokens * self.cache_write_1h.at(n)
            + usage.output_tokens * self.output.at(n)
        ) / MTOK
        return total * BATCH_DISCOUNT if batch else total


def _flat(rate: Decimal, source: str) -> Rates:
    t = Tiered(rate)
    return Rates(input=t, output=t, cache_read=t, cache_write=t, cache_write_1h=t, source=source)


FREE = _flat(ZERO, "free")


def _tiered(value: Any, fallback: Tiered | None = None) -> Tiered | None:
    if value is None:
        return fallback
    if isinstance(value, int | float | Decimal | str):
        return Tiered(Decimal(str(value)))
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None)
    if base is not None:
        return Tiered(Decimal(str(base)), tuple((int(t.start), Decimal(str(t.price))) for t in tiers or ()))
    return fallback


def rates_from_override(cfg: ModelConfig) -> Rates:
    p = cfg.price
    assert p is not None
    inp = Tiered(Decimal(str(p.input)))
    write = _tiered(p.cache_write, inp) or inp
    return Rates(
        input=inp,
        output=Tiered(Decimal(str(p.output))),
        cache_read=_tiered(p.cache_read, inp) or inp,
        cache_write=write,
        cache_write_1h=_tiered(p.cache_write_1h, write) or write,
        source="config",
    )


def catalog_rates(model: str, provider: str, base_url: str | None) -> Rates | None:
    """Look `model` up in genai-prices; None when the catalog does not know it."""
    import genai_prices
    from genai_prices import Usage as GPUsage

    kwargs: dict[str, Any] = {}
    default_url = DEFAULT_BASE_URLS.get(provider)
    if base_url and base_url.rstrip("/") != (default_url or "").rstrip("/"):
        kwargs["provider_api_url"] = base_url
    elif provider in DEFAULT_BASE_URLS:
        kwargs["provider_id"] = provider
    try:
        calc = genai_prices.calc_price(GPUsage(input_tokens=1, output_tokens=1), model, **kwargs)
    except (LookupError, ValueError):
        return None
    mp = calc.model_price
    inp = _tiered(getattr(mp, "input_mtok", None))
    out = _tiered(getattr(mp, "output_mtok", None))
    if inp is None or out is None:
        return None
    write = _tiered(getattr(mp, "cache_write_mtok", None), inp) or inp
    return Rates(
        input=inp,
        output=out,
        cache_read=_tiered(getattr(mp, "cache_read_mtok", None), inp) or inp,
        cache_write=write,
        cache_write_1h=_tiered(getattr(mp, "cache_write_1h_mtok", None), write) or write,
        source=f"genai-prices:{calc.provider.id}/{calc.model.id}",
    )


class Pricer:
    """Resolves and caches the rates of configured models."""

    def __init__(self) -> None:
        # Keyed by the config object itself (two configs may price one model name differently);
        # the object is kept in the value so that its id is never reused while cached.
        self._rates: dict[int, tuple[ModelConfig, Rates]] = {}
        self._lock = threading.Lock()

    def rates(self, cfg: ModelConfig) -> Rates:
        cached = self._rates.get(id(cfg))
        if cached is not None and cached[0] is cfg:
            return cached[1]
        with self._lock:
            if cfg.price is not None:
                rates = rates_from_override(cfg)
            elif cfg.provider in ("local", "replay"):
                rates = FREE
            else:
                found = catalog_rates(cfg.upstream_model, cfg.provider, cfg.base_url)
                if found is None:
                    log.warning(
                        "no price known for model %r (%s); its requests are recorded at $0. "
                        "Set `price: {input: ..., output: ...}` (USD per 1M tokens) on it in the config.",
                        cfg.name,
                        cfg.upstream_model,
                    )
                    rates = _flat(ZERO, "unknown")
                else:
                    rates = found
            self._rates[id(cfg)] = (cfg, rates)
            return rates

    def cost(self, cfg: ModelConfig, usage: Usage, *, batch: bool = False) -> Decimal:
        return self.rates(cfg).cost(usage, batch=batch)

    def input_rate(self, cfg: ModelConfig, total_input: int = 0) -> Decimal:
        """USD per token of uncached input, for levers that price the tokens they removed."""
        return self.rates(cfg).input.at(total_input) / MTOK


#: The process-wide pricer.
pricer = Pricer()
