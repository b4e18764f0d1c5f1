"""Per-route figures for the token levers, read from the ledger's `requests` table.

Takes the ledger store (`thrifty.ledger.store.LedgerStore`, SQLite or PostgreSQL: anything
whose `execute(sql)` returns a list of row tuples). Rows answered without a provider call
(cache hits, dedup) are left out of the provider figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


class Rows(Protocol):
    def execute(self, sql: str) -> list[tuple[Any, ...]]: ...


@dataclass
class PrefixCacheRate:
    route: str
    requests: int
    requests_with_hit: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    @property
    def token_hit_rate(self) -> float:
        """Share of all prompt tokens that were read from the provider's prefix cache."""
        total = self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
        return self.cache_read_tokens / total if total else 0.0

    @property
    def request_hit_rate(self) -> float:
        return self.requests_with_hit / self.requests if self.requests else 0.0


def prefix_cache_hit_rate(store: Rows) -> list[PrefixCacheRate]:
    """Provider prefix-cache hit rate per route, from cache_read_tokens."""
    rows = store.execute(
        "SELECT route, COUNT(*), SUM(CASE WHEN cache_read_tokens > 0 THEN 1 ELSE 0 END), "
        "SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens + cache_write_1h_tokens) "
        "FROM requests WHERE answered_by IS NULL AND status >= 200 AND status < 300 "
        "GROUP BY route ORDER BY route"
    )
    return [PrefixCacheRate(str(r[0]), *(int(x or 0) for x in r[1:])) for r in rows]


@dataclass
class Truncation:
    route: str
    requests: int
    capped: int
    capped_truncated: int
    truncated: int

    @property
    def capped_truncation_rate(self) -> float:
        """How often an answer whose max_tokens the cap set or lowered was cut off by it."""
        return self.capped_truncated / self.capped if self.capped else 0.0

    @property
    def truncation_rate(self) -> float:
        return self.truncated / self.requests if self.requests else 0.0


LENGTH_REASONS = ("length", "max_tokens")


def truncation_by_route(store: Rows) -> list[Truncation]:
    """Per route: answers ended by the token limit, overall and among capped requests."""
    rows = store.execute(
        "SELECT route, finish_reason, extra FROM requests WHERE answered_by IS NULL AND status >= 200 AND status < 300"
    )
    by: dict[str, Truncation] = {}
    for route, reason, extra in rows:
        t = by.setdefault(str(route), Truncation(str(route), 0, 0, 0, 0))
        data = _json(extra)
        capped = bool(data.get("capped"))
        cut = reason in LENGTH_REASONS
        t.requests += 1
        t.capped += capped
        t.truncated += cut
        t.capped_truncated += capped and cut
    return [by[k] for k in sorted(by)]


def tokens_saved_by_route(store: Rows, prefix: str = "compress") -> dict[str, dict[str, int]]:
    """Input tokens removed per route and lever, for levers whose name starts with `prefix`."""
    out: dict[str, dict[str, int]] = {}
    for route, tokens_saved in store.execute("SELECT route, tokens_saved FROM requests"):
        for lever, n in _json(tokens_saved).items():
            if lever.startswith(prefix):
                bucket = out.setdefault(str(route), {})
                bucket[lever] = bucket.get(lever, 0) + int(n)
    return out


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
