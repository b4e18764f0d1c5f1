"""One ledger row per request: what it cost, what it would have cost, and which lever saved what.

Money is kept exact as integer picodollars (1e-12 USD) so that sums in SQL are exact; the
`*_usd` REAL columns beside them are for people reading the table by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from thrifty.migrations import Migration

PICO = Decimal(10) ** 12


def to_pico(amount: Decimal) -> int:
    return int((amount * PICO).to_integral_value())


def from_pico(value: int | None) -> Decimal:
    return Decimal(value or 0) / PICO


@dataclass
class LedgerRecord:
    request_id: str
    ts: float
    protocol: str
    requested_model: str
    served_model: str
    provider: str
    status: int
    #: ok | error | partial (a stream cut short) | cancelled (the client went away)
    outcome: str
    key_name: str | None = None
    tenant: str = "default"
    route: str = "default"
    feature: str | None = None
    task: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    #: hit | miss | bypass | None (no cache on this route)
    cache: str | None = None
    #: the lever that answered without calling a provider (cache, semantic_cache, dedup), if any
    answered_by: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost: Decimal = Decimal(0)
    counterfactual_cost: Decimal = Decimal(0)
    savings: dict[str, Decimal] = field(default_factory=dict)
    tokens_saved: dict[str, int] = field(default_factory=dict)
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    stream: bool = False
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    request_body: dict[str, Any] | None = None
    response_body: dict[str, Any] | None = None


#: Column order shared by the SQLite and PostgreSQL stores.
COLUMNS = (
    "request_id", "ts", "protocol", "requested_model", "served_model", "provider", "status",
    "outcome", "key_name", "tenant", "route", "feature", "task", "tags", "error", "cache",
    "answered_by", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "usage_estimated",
    "cost_pico", "counterfactual_pico", "saved_pico", "cost_usd", "counterfactual_usd",
    "savings", "tokens_saved", "latency_ms", "ttfb_ms", "stream", "finish_reason", "extra",
    "request_body", "response_body",
)  # fmt: skip


def schema_sql(dialect: str) -> list[str]:
    """DDL of the ledger's first schema (`ledger_0001_initial`) in `dialect`."""
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    boolean = "INTEGER" if dialect == "sqlite" else "BOOLEAN"
    text = "TEXT"
    return [
        f"""CREATE TABLE IF NOT EXISTS requests (
            request_id {text} PRIMARY KEY,
            ts {real} NOT NULL,
            protocol {text} NOT NULL,
            requested_model {text} NOT NULL,
            served_model {text} NOT NULL,
            provider {text} NOT NULL,
            status INTEGER NOT NULL,
            outcome {text} NOT NULL,
            key_name {text},
            tenant {text} NOT NULL,
            route {text} NOT NULL,
            feature {text},
            task {text},
            tags {text} NOT NULL,
            error {text},
            cache {text},
            answered_by {text},
            input_tokens {big} NOT NULL,
            cache_read_tokens {big} NOT NULL,
            cache_write_tokens {big} NOT NULL,
            cache_write_1h_tokens {big} NOT NULL,
            output_tokens {big} NOT NULL,
            reasoning_tokens {big} NOT NULL,
            usage_estimated {boolean} NOT NULL,
            cost_pico {big} NOT NULL,
            counterfactual_pico {big} NOT NULL,
            saved_pico {big} NOT NULL,
            cost_usd {real} NOT NULL,
            counterfactual_usd {real} NOT NULL,
            savings {text} NOT NULL,
            tokens_saved {text} NOT NULL,
            latency_ms {real} NOT NULL,
            ttfb_ms {real},
            stream {boolean} NOT NULL,
            finish_reason {text},
            extra {text} NOT NULL,
            request_body {text},
            response_body {text}
        )""",
        "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        "CREATE INDEX IF NOT EXISTS requests_task ON requests (task) WHERE task IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS task_outcomes (
            task {text} PRIMARY KEY,
            ts {real} NOT NULL,
            success {boolean} NOT NULL,
            score {real},
            note {text}
        )""",
    ]


def _spend_indexes(dialect: str) -> list[str]:
    """Indexes for what budgets and per-key / per-tenant reports query: one key's or tenant's
    rows over a window."""
    return [
        "CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_name, ts)",
        "CREATE INDEX IF NOT EXISTS requests_tenant_ts ON requests (tenant, ts)",
    ]


#: The ledger's schema history, oldest first (see `thrifty.migrations`). Add a step at the
#: end; never edit or reorder a step that has shipped.
MIGRATIONS = (
    Migration("ledger_0001_initial", schema_sql),
    Migration("ledger_0002_spend_indexes", _spend_indexes),
)
