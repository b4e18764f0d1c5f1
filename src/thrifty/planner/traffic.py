""" "Use my traffic": a workload measured from thrifty's ledger or an audit log, not guessed.

Reads the same sources as `thrifty audit` (the ledger in SQLite or PostgreSQL, OpenAI-format
JSONL, LiteLLM spend logs) one row at a time and keeps only counters: requests per hour of day,
token sizes of the requests that reached a model, cache hits, routed requests, the most used
model, and the saving each lever recorded. Errors are left out of the traffic.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from thrifty.audit.row import AuditRow
from thrifty.audit.sources import Format, LogSource

#: Cache outcomes and answering levers that mean no model was called.
_HITS = {"hit", "semantic-hit"}
_ANSWERED = {"cache", "semantic_cache", "dedup"}


@dataclass
class Traffic:
    source: str
    requests: int = 0
    errors: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    hourly: list[int] = field(default_factory=lambda: [0] * 24)
    cache_hits: int = 0
    routed: int = 0
    #: token counts of the requests that reached a model (4 bytes each: a million rows is 8 MB)
    input_tokens: array[int] = field(default_factory=lambda: array("l"))
    output_tokens: array[int] = field(default_factory=lambda: array("l"))
    #: models that served requests no lever moved, and those the router moved requests to
    models: Counter[str] = field(default_factory=Counter)
    route_models: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0
    savings: dict[str, float] = field(default_factory=dict)
    bad_lines: int = 0

    @property
    def days(self) -> float:
        """Days the log spans (at least one hour's worth, so a short log still gives a rate)."""
        if self.first_ts is None or self.last_ts is None:
            return 1.0
        return max(self.last_ts - self.first_ts, 3600.0) / 86400

    def _q(self, values: array[int], q: float) -> float:
        if not values:
            return 0.0
        s = sorted(values)
        return float(s[min(len(s) - 1, int(q * len(s)))])

    def summary(self) -> dict[str, Any]:
        called = len(self.output_tokens)
        return {
            "source": self.source, "requests": self.requests, "errors": self.errors, "days": self.days,
            "requests_per_day": self.requests / self.days, "hourly": self.hourly,
            "cache_hit_rate": self.cache_hits / self.requests if self.requests else 0.0,
            "routed_share": self.routed / self.requests if self.requests else 0.0,
            "input_tokens": {"mean": sum(self.input_tokens) / called if called else 0.0,
                             "p50": self._q(self.input_tokens, 0.5), "p90": self._q(self.input_tokens, 0.9)},
            "output_tokens": {"mean": sum(self.output_tokens) / called if called else 0.0,
                              "p50": self._q(self.output_tokens, 0.5), "p90": self._q(self.output_tokens, 0.9)},
            "model": self.models.most_common(1)[0][0] if self.models else None,
            "route_model": self.route_models.most_common(1)[0][0] if self.route_models else None,
            "cost": self.cost, "savings": self.savings, "bad_lines": self.bad_lines,
        }  # fmt: skip

    def workload_fields(self) -> dict[str, Any]:
        """The workload fields this traffic measures (the rest keep their defaults or flags)."""
        s = self.summary()
        if not self.requests:
            return {}
        fields: dict[str, Any] = {
            "requests_per_day": s["requests_per_day"],
            "input_tokens": max(s["input_tokens"]["mean"], 0.0),
            "output_tokens": max(s["output_tokens"]["mean"], 1.0),
            "levers": {"cache_hit_rate": s["cache_hit_rate"], "routed_share": s["routed_share"]},
            "source": f"measured from {self.source}",
        }
        if sum(self.hourly) > 0 and self.days >= 1.0:
            fields["hourly"] = [float(h) for h in self.hourly]
        if s["model"]:
            fields["model"] = s["model"]
        if s["route_model"]:
            fields["levers"]["route_model"] = s["route_model"]
        return fields


def _add(t: Traffic, row: AuditRow) -> None:
    if row.error:
        t.errors += 1
        return
    t.requests += 1
    if row.ts is not None:
        t.first_ts = row.ts if t.first_ts is None else min(t.first_ts, row.ts)
        t.last_ts = row.ts if t.last_ts is None else max(t.last_ts, row.ts)
        t.hourly[datetime.fromtimestamp(row.ts, UTC).hour] += 1
    t.cost += row.cost or 0.0
    for lever, usd in row.savings.items():
        t.savings[lever] = t.savings.get(lever, 0.0) + usd
    if row.cache in _HITS or row.answered_by in _ANSWERED:
        t.cache_hits += 1
        return
    if "route" in row.savings:
        t.routed += 1
        t.route_models[row.model] += 1
    else:
        t.models[row.model] += 1
    t.input_tokens.append(row.input_tokens + row.cached_tokens)
    t.output_tokens.append(row.output_tokens)


def measure(location: str, fmt: Format = "auto") -> Traffic:
    """Traffic counters of a ledger (path or postgresql:// URL) or an audit log file."""
    source = LogSource(location, fmt)
    t = Traffic(source=location)
    for item in source:
        if isinstance(item, AuditRow):
            _add(t, item)
    t.bad_lines = source.bad.count
    return t


__all__ = ["Traffic", "measure"]
