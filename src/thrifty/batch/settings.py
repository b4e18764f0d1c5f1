"""The `batch:` config section: limits, leases, retries and execution targets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BatchSettings", "batch_settings"]


class BatchSettings(BaseModel):
    """The `batch:` config section."""

    model_config = ConfigDict(extra="forbid")

    #: Input files over this size are refused at upload / submission.
    max_file_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_lines: int = Field(default=50_000, gt=0)
    #: Lines one worker runs at once (the concurrency budget of the `calls` target).
    concurrency: int = Field(default=8, ge=1, le=1024)
    #: Upstream calls per second the `calls` target may start (0: no limit).
    rate: float = Field(default=0, ge=0)
    #: Seconds a claimed line stays leased; a worker renews it while it works, and a dead
    #: worker's lines return to the pool once it passes.
    lease_seconds: float = Field(default=30.0, gt=0)
    #: Attempts per line before it goes to the error file (429 and 5xx are retried).
    max_attempts: int = Field(default=4, ge=1, le=20)
    retry_backoff: float = Field(default=0.5, ge=0)
    #: Run jobs inside `thrifty serve` (any replica picks up any job).
    worker: bool = True
    #: How often an idle worker looks for jobs, and a provider batch is polled (seconds).
    poll_seconds: float = Field(default=1.0, gt=0)
    #: Models whose provider batch API may be used (OpenAI Batch / Anthropic Message
    #: Batches), when the job's deadline is at least `provider_batch_min_deadline` away.
    provider_batch_models: list[str] = Field(default_factory=list)
    provider_batch_min_deadline: float = Field(default=24 * 3600.0, ge=0)
    #: Lines per provider batch.
    provider_batch_size: int = Field(default=1000, ge=1, le=50_000)
    #: POSTed a JSON summary when a job ends (a webhook), if set.
    webhook_url: str | None = None


def batch_settings(section: dict[str, object]) -> BatchSettings:
    return BatchSettings.model_validate(section)
