"""A request's worst plausible cost, before it is sent.

Input: the request's tokens (thrifty's tokenizer) at the model's input price. Output: the
smaller of the request's own `max_tokens` and a high percentile of the output tokens that the
key (else the traffic class) produced recently, read from the ledger; the model's output
limit only when the ledger has too few rows to say. Reserving the model's maximum for every
request without `max_tokens` is what blocks a large budget at a few cents of real spend.

Percentiles are cached per key and per route and refreshed in the background, so admission
reads the ledger at most once per key per refresh period, and never on the hot path after
the first request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from decimal import Decimal
from typing import Any

from thrifty.config import Config
from thrifty.ledger.prices import MTOK, pricer
from thrifty.ledger.store import LedgerStore
from thrifty.ledger.tokens import count_text, estimate_request_tokens
from thrifty.spend.settings import SpendSettings

__all__ = ["Estimate", "OutputEstimator", "percentile", "request_max_tokens"]

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
SAMPLE_ROWS = 500


def percentile(values: list[int], p: float) -> int:
    """The nearest-rank `p` percentile of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def request_max_tokens(body: dict[str, Any]) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class Estimate:
    """What admission reserves for one request."""

    __slots__ = ("input_tokens", "output_tokens", "output_source", "usd")

    def __init__(self, input_tokens: int, output_tokens: int, output_source: str, usd: Decimal) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.output_source = output_source
        self.usd = usd

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class OutputEstimator:
    """Ledger percentiles of output tokens per key and per route, cached."""

    def __init__(self, store: LedgerStore | None, config: Config, settings: SpendSettings) -> None:
        self.store = store
        self.config = config
        self.settings = settings
        self._cache: dict[tuple[str, str], tuple[int | None, float]] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _query(self, column: str, value: str) -> int | None:
        if self.store is None:
            return None
        rows = self.store.execute(
            f"SELECT output_tokens FROM requests WHERE {column} = ? AND status < 400 AND answered_by IS NULL "
            f"ORDER BY ts DESC LIMIT {SAMPLE_ROWS}", (value,))
        values = [int(r[0]) for r in rows]
        if len(values) < self.settings.min_samples:
            return None
        return percentile(values, self.settings.output_percentile)

    async def _fetch(self, scope: tuple[str, str]) -> int | None:
        try:
            value = await asyncio.to_thread(self._query, *scope)
        except Exception:  # the ledger is the estimate's source, not a dependency of admission
            log.warning("reading output percentiles for %s=%s failed", *scope, exc_info=True)
            value = None
        self._cache[scope] = (value, time.monotonic())
        return value

    async def _lookup(self, scope: tuple[str, str]) -> int | None:
        cached = self._cache.get(scope)
        if cached is None:
            return await self._fetch(scope)
        value, at = cached
        if time.monotonic() - at > REFRESH_SECONDS and scope not in self._refreshing:
            self._refreshing.add(scope)

            async def refresh() -> None:
                try:
                    await self._fetch(scope)
                finally:
                    self._refreshing.discard(scope)

            task = asyncio.get_running_loop().create_task(refresh())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return value

    async def output_tokens(self, key_name: str | None, route: str, model: str) -> tuple[int, str]:
        """The output-token estimate and where it came from (key / route / model limit)."""
        if key_name is not None:
            found = await self._lookup(("key_name", key_name))
            if found is not None:
                return found, "key p%g" % (self.settings.output_percentile * 100)
        found = await self._lookup(("route", route))
        if found is not None:
            return found, "route p%g" % (self.settings.output_percentile * 100)
        return self.settings.output_limits.get(model, self.settings.default_output_limit), "model limit"

    async def estimate(self, protocol: str, body: dict[str, Any], key_name: str | None, route: str,
                       models: list[str], endpoint: str = "chat") -> Estimate:
        """The worst plausible cost of `body` on the dearest of `models` (one, unless an alias).
        `endpoint` says what the body is: chat (or messages), legacy text completions (a
        `prompt`), or embeddings (`input` texts, and no output at all)."""
        input_tokens = _input_tokens(protocol, body, endpoint)
        asked = request_max_tokens(body)
        best: Estimate | None = None
        for name in models:
            cfg = self.config.model(name)
            rates = pricer.rates(cfg)
            if endpoint == "embeddings":
                out, source = 0, "embeddings"
            elif asked is not None:
                out, source = asked, "max_tokens"
                learned, src = await self.output_tokens(key_name, route, name)
                if src != "model limit" and learned < asked:
                    out, source = learned, src
            else:
                out, source = await self.output_tokens(key_name, route, name)
            usd = (rates.input.at(input_tokens) * input_tokens + rates.output.at(input_tokens) * out) / MTOK
            if best is None or usd > best.usd:
                best = Estimate(input_tokens, out, source, usd)
        return best or Estimate(input_tokens, asked or 0, "no model", Decimal(0))


def _input_tokens(protocol: str, body: dict[str, Any], endpoint: str) -> int:
    if endpoint == "chat":
        return estimate_request_tokens(protocol, body)
    value = body.get("prompt" if endpoint == "completions" else "input")
    items = value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]
    return sum(len(i) if isinstance(i, list) else count_text(i if isinstance(i, str) else str(i)) for i in items)
