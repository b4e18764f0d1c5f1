"""A workload to plan for: traffic, token sizes, shape over the day, latency target and levers.

It comes from flags, from a YAML file (the same field names), or measured from the ledger or an
audit log (`traffic.py`). Validation turns impossible inputs (negative counts, shares above 1,
an hourly profile that is not 24 numbers) into a message naming the field, never a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Days in the planner's month: the API bill and GPU-hours both use it (720 GPU-hours a month).
DAYS_PER_MONTH = 30


class PlanError(ValueError):
    """A workload or a catalog the planner cannot honestly put a number on; the message says why."""


class Levers(BaseModel):
    """The cost levers as shares of the traffic (0-1), applied in this order."""

    model_config = ConfigDict(extra="forbid")

    cache_hit_rate: float = Field(default=0.0, ge=0, le=1)
    routed_share: float = Field(default=0.0, ge=0, le=1)
    route_model: str | None = None
    compression: float = Field(default=0.0, ge=0, le=1, description="share of input tokens removed")
    output_cap: float = Field(default=0.0, ge=0, le=1, description="share of output tokens cut")
    batch_share: float = Field(default=0.0, ge=0, le=1, description="share sent at the batch discount")
    batch_discount: float = Field(default=0.5, ge=0, le=1)


class SelfHost(BaseModel):
    """The open-weight model to size and the options to compare."""

    model_config = ConfigDict(extra="forbid")

    model: str = "llama-3.3-70b"
    gpus: list[str] | None = None  # None: every GPU of the catalog
    precisions: list[str] = Field(default_factory=lambda: ["fp16", "fp8", "int8", "int4"])
    kv_precision: str = "fp16"
    max_batch: int | None = Field(default=256, ge=1)
    #: extra GPU time batch work needs on spot capacity to redo what an interruption lost (assumed)
    spot_overhead: float = Field(default=0.10, ge=0, le=10)
    price: str = Field(default="on_demand", pattern="^(on_demand|reserved)$")


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_day: float = Field(gt=0)
    input_tokens: float = Field(default=1000, ge=0)
    output_tokens: float = Field(default=250, ge=1)
    #: peak requests/s over mean requests/s (ignored when `hourly` is given)
    peak_to_mean: float = Field(default=2.0, ge=1)
    #: 24 relative request counts, one per hour of the day (UTC)
    hourly: list[float] | None = None
    model: str = "gpt-4o-mini"
    provider: str | None = None
    #: USD per 1M tokens, overriding genai-prices
    input_price: float | None = Field(default=None, ge=0)
    output_price: float | None = Field(default=None, ge=0)
    #: USD per request, when the bill is known per request rather than per token
    price_per_request: float | None = Field(default=None, ge=0)
    #: the slowest acceptable time per output token, ms (50 ms = 20 tokens/s per stream)
    latency_ms: float = Field(default=50.0, gt=0)
    levers: Levers = Field(default_factory=Levers)
    selfhost: SelfHost = Field(default_factory=SelfHost)
    #: where the numbers came from: "flags", a file, or the ledger/audit log they were measured on
    source: str = "flags"

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if self.hourly is not None and (
            len(self.hourly) != 24 or any(h < 0 for h in self.hourly) or sum(self.hourly) <= 0
        ):
            raise ValueError("hourly must be 24 non-negative numbers, not all zero")
        if (self.input_price is None) != (self.output_price is None):
            raise ValueError("give both input_price and output_price, or neither")
        return self

    @property
    def requests_per_month(self) -> float:
        return self.requests_per_day * DAYS_PER_MONTH

    @property
    def mean_rps(self) -> float:
        return self.requests_per_day / 86400

    @property
    def peak_ratio(self) -> float:
        if self.hourly is None:
            return self.peak_to_mean
        mean = sum(self.hourly) / 24
        return max(self.hourly) / mean

    @property
    def peak_rps(self) -> float:
        return self.mean_rps * self.peak_ratio

    def hourly_rps(self) -> list[float]:
        """Requests/s in each hour of the day (flat at the mean when no profile is given)."""
        if self.hourly is None:
            return [self.mean_rps] * 24
        total = sum(self.hourly)
        return [self.requests_per_day * h / total / 3600 for h in self.hourly]


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'workload'}: {e['msg']}" for e in exc.errors())


def workload_from(data: dict[str, Any]) -> Workload:
    """A validated workload, or a PlanError that names every bad field."""
    data = dict(data)
    if "requests_per_month" in data:
        per_month = data.pop("requests_per_month")
        if "requests_per_day" in data:
            raise PlanError("give requests_per_day or requests_per_month, not both")
        try:
            data["requests_per_day"] = float(per_month) / DAYS_PER_MONTH
        except (TypeError, ValueError):
            raise PlanError(f"requests_per_month: not a number: {per_month!r}") from None
    try:
        return Workload.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_errors(exc)) from None


def load_workload(path: str | Path) -> Workload:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(doc, dict):
        raise PlanError(f"{path}: a workload is a YAML mapping")
    return workload_from({"source": str(path), **doc})


__all__ = ["DAYS_PER_MONTH", "Levers", "PlanError", "SelfHost", "Workload", "load_workload", "workload_from"]
