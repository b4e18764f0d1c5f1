"""The provider interface: one module per wire protocol, all behind `Provider.send`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from thrifty.errors import UpstreamError
from thrifty.types import Context, Reply, Wire

if TYPE_CHECKING:
    from thrifty.config import ModelConfig

__all__ = ["NoOptions", "Provider", "UpstreamError"]


class NoOptions(BaseModel):
    """A provider kind without options: any key under `options:` is a mistake."""

    model_config = ConfigDict(extra="forbid")


class Provider(ABC):
    """Sends one request, already in `protocol`, to one configured model.

    `send` returns a `Reply` in the provider's own protocol (the dispatch stage translates
    to the client's), with `usage` filled for complete replies and, for streams, filled by
    the time the stream ends. It raises `UpstreamError` for failures it can see before the
    reply starts; failures after that end the stream with `EventStream.error` set.
    """

    protocol: Wire = "openai"
    #: The model of this kind's `options:` (validated when the config is loaded).
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @classmethod
    def create(cls, config: ModelConfig, sections: dict[str, dict[str, Any]]) -> Provider:
        """Build the provider for one configured model; `sections` are the config's tool
        sections (the local engine reads `engine:`)."""
        return cls(config)

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

    def speaks_responses(self) -> bool:
        """Whether this provider serves the Responses API itself (`send_responses`); the
        dispatch stage sends a `/v1/responses` request to it as is instead of translating."""
        return False

    async def send_responses(self, body: dict[str, Any], ctx: Context) -> Reply:
        """Send a Responses-API request as is; the reply's body is a `response` object, its
        stream the Responses events. Only called where `speaks_responses()` is true."""
        raise UpstreamError(400, f"model {self.name!r} does not serve the Responses API natively",
                            error_type="invalid_request_error")
