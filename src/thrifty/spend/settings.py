"""The `spend:` config section: where counters live and how admission estimates a request.

Keys, teams and their budgets live in the store (`thrifty keys ...`, `/v1/thrifty/keys`);
this section holds what is not per key: the Redis that replicas share, budgets on tags, the
output-token estimate's percentile and the alert webhook.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from thrifty.spend.limits import BudgetSpec

__all__ = ["AlertSettings", "SpendSettings"]


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: POSTed a JSON body for each threshold a budget crosses (once per window).
    webhook: str | None = None
    #: Fractions of a budget that fire an alert.
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    #: Attempts per alert (the first plus retries), and seconds before the first retry (doubling).
    attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff: float = Field(default=0.5, ge=0)
    timeout: float = Field(default=5.0, gt=0)

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for t in v:
            if not 0 < t <= 1.5:
                raise ValueError(f"threshold {t} must be a fraction of the budget in (0, 1.5]")
        return sorted(set(v))


class SpendSettings(BaseModel):
    """`spend:` in thrifty.yaml."""

    model_config = ConfigDict(extra="forbid")

    #: redis://HOST:PORT/DB: counters shared by every replica. Unset: the config's top-level
    #: `redis:` if it has one, else counters in this process.
    redis: str | None = None

    @model_validator(mode="after")
    def _shared_redis(self, info: ValidationInfo) -> SpendSettings:
        redis = (info.context or {}).get("redis")
        if self.redis is None and redis:
            self.redis = redis
        return self
    #: Prefix of every Redis key (one per deployment; tests and benchmarks use their own).
    redis_prefix: str = "thrifty:spend:"
    #: Seconds a Redis call may take before the replica treats Redis as unreachable.
    redis_timeout: float = Field(default=0.25, gt=0)
    #: While Redis is unreachable each replica enforces locally, with this share of what
    #: remained of each budget and limit when Redis was last seen (1 / the number of replicas
    #: is the share that can never overspend).
    outage_share: float = Field(default=0.5, gt=0, le=1)
    #: Seconds between reloads of the key table (a key revoked on one replica is refused by
    #: the others after at most this long).
    keys_refresh: float = Field(default=5.0, gt=0)
    #: Budgets on tags, applying to every request carrying the tag: {"feature=summary": [...]}.
    tags: dict[str, list[BudgetSpec]] = Field(default_factory=dict)
    #: The output-token estimate: this percentile of the key's (else the route's) recent
    #: output tokens in the ledger, once it has `min_samples` of them.
    output_percentile: float = Field(default=0.99, gt=0, le=1)
    min_samples: int = Field(default=20, ge=1)
    #: Output-token ceiling per model (when the ledger knows nothing), and for the others.
    output_limits: dict[str, int] = Field(default_factory=dict)
    default_output_limit: int = Field(default=8192, gt=0)
    #: Seconds of the fixed, epoch-aligned window that `rpm` and `tpm` count over. 60 in any
    #: real deployment; benchmarks shorten it (a limit of 600/min becomes 60 per 6 s).
    rate_window: int = Field(default=60, ge=1, le=3600)
    #: Seconds a concurrency slot is held at most (a replica that dies frees its slots then).
    lease_seconds: float = Field(default=900.0, gt=0)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("tags")
    @classmethod
    def _tag_names(cls, v: dict[str, list[BudgetSpec]]) -> dict[str, list[BudgetSpec]]:
        for tag in v:
            key, sep, value = tag.partition("=")
            if not sep or not key or not value:
                raise ValueError(f"tag budget {tag!r}: name the tag as key=value")
        return v
