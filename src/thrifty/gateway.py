"""The gateway object: config, providers, pipeline and ledger, wired once at start-up.

Stages and HTTP extensions receive it; it is the one place that knows how the parts fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thrifty.config import Config

if TYPE_CHECKING:
    from thrifty.ledger.writer import LedgerWriter
    from thrifty.pipeline.context import Context, Reply
    from thrifty.pipeline.pipeline import Pipeline
    from thrifty.providers.base import Provider


class Gateway:
    """Holds what every request needs.

    Attributes stages may rely on:
    - `config`: the validated `Config`.
    - `providers`: configured model name -> `Provider`.
    - `ledger`: the `LedgerWriter` (its `.store` answers queries).
    - `pipeline`: the stage chain (set after the stages are built).
    - `state`: a dict where extensions keep shared objects (caches, metrics, the engine).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {}
        self.ledger: LedgerWriter | None = None
        self.pipeline: Pipeline | None = None
        self.state: dict[str, Any] = {}

    async def call_model(self, ctx: Context, model: str, body: dict[str, Any]) -> Reply:
        """Call configured `model` directly (no levers), for stages that need a side call:
        a cascade's next tier, a history summary, a shadow or judge request.

        `body` is in `ctx.protocol`; the reply comes back in it too. Its cost is added to
        `ctx.extra["side_cost"]` so that the ledger row carries it.
        """
        from thrifty.pipeline.dispatch import dispatch_to

        return await dispatch_to(self, ctx, model, body)
