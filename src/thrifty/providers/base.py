"""The provider interface: one module per wire protocol, all behind `Provider.send`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from thrifty.pipeline.context import Context, Protocol, Reply

if TYPE_CHECKING:
    from thrifty.config import ModelConfig


class UpstreamError(Exception):
    """A provider failed before any byte of its answer reached the client.

    `status` and `message` are what the client sees (the upstream's own, where it gave
    them); `retryable` says whether trying again may help; `retry_after` is the wait in
    seconds the upstream asked for, if any.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        error_type: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.error_type = error_type
        self.body = body


class Provider(ABC):
    """Sends one request, already in `protocol`, to one configured model.

    `send` returns a `Reply` in the provider's own protocol (the dispatch stage translates
    to the client's), with `usage` filled for complete replies and, for streams, filled by
    the time the stream ends. It raises `UpstreamError` for failures it can see before the
    reply starts; failures after that end the stream with `EventStream.error` set.
    """

    protocol: Protocol = "openai"

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        """Open connections or load weights. Called once when the server starts."""

    async def close(self) -> None:
        """Release what `start` took."""

    def ready(self) -> bool:
        """Whether the provider can take requests now (for /readyz)."""
        return True

    def stats(self) -> dict[str, float]:
        """Live figures for /metrics and for routing (queue depth, active sequences, ...)."""
        return {}

    @abstractmethod
    async def send(self, body: dict[str, Any], ctx: Context) -> Reply: ...
