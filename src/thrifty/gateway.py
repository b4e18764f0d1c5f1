"""The gateway object: config, providers, pipeline and ledger, wired once at start-up.

Levers and HTTP extensions receive it; it is the one place that knows how the parts fit.
Every service is a named, typed attribute (no string-keyed bag), and `close` releases an
explicit list of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thrifty.config import Config
from thrifty.pipeline.lever import LeverOverrides

if TYPE_CHECKING:
    from thrifty.batch.lane import BatchLane
    from thrifty.cache.dedup import DedupStage
    from thrifty.cache.exact import ExactCacheStage
    from thrifty.cache.index import SemanticIndex
    from thrifty.evals.shadow import ShadowStage
    from thrifty.ledger.writer import LedgerWriter
    from thrifty.pipeline.dispatch import Dispatcher
    from thrifty.pipeline.pipeline import Pipeline
    from thrifty.providers.base import Provider
    from thrifty.server.metrics import MetricsCollector
    from thrifty.spend.control import SpendControl
    from thrifty.types import Context, Reply, Wire

__all__ = ["Gateway", "Services"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Shared services that levers and extensions set up and others read (admin routes,
    metrics, dashboards). Each is None until the lever or extension that owns it starts."""

    #: The exact cache lever (its stores answer invalidation).
    cache: ExactCacheStage | None = None
    #: The semantic cache's vector index (shared by every traffic class).
    semantic_index: SemanticIndex | None = None
    dedup: DedupStage | None = None
    shadow: ShadowStage | None = None
    metrics: MetricsCollector | None = None
    #: Virtual keys, budgets and rate limits (the `spend` extension): admission and settlement.
    spend: SpendControl | None = None
    #: The batch lane (its store answers the queue depth autoscalers read).
    batch: BatchLane | None = None
    #: OpenTelemetry's tracer provider and exporter, when tracing is on.
    otel: tuple[Any, Any] | None = None
    #: Services of third-party levers and extensions, by their own names.
    plugins: dict[str, Any] = field(default_factory=dict)


class Gateway:
    """Holds what every request needs.

    - `config`: the validated `Config`.
    - `providers`: configured model name -> `Provider`.
    - `ledger`: the `LedgerWriter` (its `.store` answers queries).
    - `pipeline`: the lever chain (set by `start`); `dispatcher`: the provider dispatch.
    - `overrides`: levers switched off per traffic class at run time (shadow evaluation).
    - `aliases`: whether a model name that is not configured is an alias some lever resolves
      (`auto`, `tier:cheap`; set by the route lever).
    - `services`: shared services (`Services`).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {}
        self.ledger: LedgerWriter | None = None
        self.pipeline: Pipeline | None = None
        self.dispatcher: Dispatcher | None = None
        self.overrides = LeverOverrides()
        self.aliases: Callable[[str], bool] | None = None
        self.services = Services()
        #: HTTP requests being handled now (the autoscaling signal on /metrics).
        self.in_flight = 0
        #: Requests refused at the door because `server.max_in_flight` were in flight.
        self.shed = 0
        self._temp_spool: Path | None = None

    async def start(self, *, ledger: bool = True) -> None:
        """Open the ledger, start the providers and build the pipeline."""
        from thrifty.ledger.spool import default_spool_dir
        from thrifty.ledger.store import SQLiteStore, open_store
        from thrifty.ledger.tokens import warm
        from thrifty.ledger.writer import LedgerWriter
        from thrifty.pipeline.dispatch import Dispatcher
        from thrifty.pipeline.pipeline import Pipeline, build_levers
        from thrifty.providers.registry import make_provider

        if ledger:
            store = await asyncio.to_thread(open_store, self.config.store)
            lc = self.config.ledger
            if lc.spool_dir:
                spool_dir = Path(lc.spool_dir)
            elif self.config.store.endswith(":memory:"):  # a throw-away ledger: a private spool
                import tempfile

                spool_dir = self._temp_spool = Path(tempfile.mkdtemp(prefix="thrifty-ledger-spool-"))
            else:
                spool_dir = default_spool_dir(self.config.store)
            self.ledger = await asyncio.to_thread(
                LedgerWriter,
                store,
                flush_interval=lc.flush_interval,
                batch_size=lc.batch_size,
                spool_dir=spool_dir,
                durability_ms=lc.durability_ms,
                fsync=lc.fsync,
                max_pending=lc.max_pending,
                retry_max=lc.retry_max,
                # the spill file of versions before the spool, replayed once
                adopt=(Path(f"{store.path}.spill.jsonl"),) if isinstance(store, SQLiteStore) else (),
            )
        await asyncio.to_thread(warm)  # load the tokenizer now, not on the first cut-short stream
        for m in self.config.models:
            self.providers[m.name] = make_provider(m, self.config)
        await asyncio.gather(*(p.start() for p in self.providers.values()))
        self.dispatcher = Dispatcher(self)
        self.pipeline = Pipeline(build_levers(self), self.dispatcher, self.overrides)
        log.info("pipeline: %s -> dispatch", " -> ".join(self.pipeline.names) or "(no levers)")

    async def close(self) -> None:
        """Close the levers, providers, shared HTTP sessions and the ledger, in that order."""
        from thrifty.providers.transport import close_session

        for lever in self.pipeline.levers if self.pipeline is not None else []:
            try:
                await lever.aclose()
            except Exception:
                log.exception("closing lever %s failed", lever.name)
        for p in self.providers.values():
            try:
                await p.close()
            except Exception:
                log.exception("closing provider %s failed", p.name)
        if self.services.otel is not None:
            try:
                self.services.otel[0].shutdown()
            except Exception:
                log.exception("closing the tracer failed")
        await close_session()
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)
        if self._temp_spool is not None:
            import shutil

            shutil.rmtree(self._temp_spool, ignore_errors=True)
        if self._temp_spool is not None:
            import shutil

            shutil.rmtree(self._temp_spool, ignore_errors=True)

    async def call_model(self, ctx: Context, model: str, body: dict[str, Any], protocol: Wire | None = None) -> Reply:
        """Call configured `model` directly (no levers), for levers that need a side call:
        a cascade's next tier, a history summary, a shadow or judge request.

        `body` is in `protocol` (default `ctx.protocol`); the reply comes back in it too. Its
        cost is added to `ctx.side_cost`, so that the request's ledger row carries it.
        """
        assert self.dispatcher is not None, "the gateway is not started"
        return await self.dispatcher.side_call(ctx, model, body, protocol)
