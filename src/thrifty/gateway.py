"""The gateway object: config, providers, pipeline and ledger, wired once at start-up.

Stages and HTTP extensions receive it; it is the one place that knows how the parts fit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thrifty.config import Config

if TYPE_CHECKING:
    from thrifty.ledger.writer import LedgerWriter
    from thrifty.pipeline.context import Context, Protocol, Reply
    from thrifty.pipeline.pipeline import Pipeline
    from thrifty.providers.base import Provider

log = logging.getLogger("thrifty")


class Gateway:
    """Holds what every request needs.

    Attributes stages may rely on:
    - `config`: the validated `Config`.
    - `providers`: configured model name -> `Provider`.
    - `ledger`: the `LedgerWriter` (its `.store` answers queries).
    - `pipeline`: the stage chain (set by `start`).
    - `state`: a dict where extensions keep shared objects (caches, metrics, the engine);
      `state["dispatcher"]` is the provider dispatch.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {}
        self.ledger: LedgerWriter | None = None
        self.pipeline: Pipeline | None = None
        self.state: dict[str, Any] = {}
        self._temp_spool: Path | None = None

    async def start(self, *, ledger: bool = True) -> None:
        """Open the ledger, start the providers and build the pipeline."""
        from thrifty.ledger.store import SQLiteStore, open_store
        from thrifty.ledger.writer import LedgerWriter
        from thrifty.pipeline.dispatch import Dispatcher
        from thrifty.pipeline.pipeline import Pipeline, build_stages
        from thrifty.providers.registry import make_provider

        if ledger:
            from thrifty.ledger.spool import default_spool_dir

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
        from thrifty.ledger.tokens import warm

        await asyncio.to_thread(warm)  # load the tokenizer now, not on the first cut-short stream
        for m in self.config.models:
            self.providers[m.name] = make_provider(m, self.config)
        await asyncio.gather(*(p.start() for p in self.providers.values()))
        dispatcher = Dispatcher(self)
        self.state["dispatcher"] = dispatcher
        self.pipeline = Pipeline(build_stages(self), dispatcher)
        log.info("pipeline: %s -> dispatch", " -> ".join(self.pipeline.names) or "(no levers)")

    async def close(self) -> None:
        from thrifty.providers.http import close_session

        for p in self.providers.values():
            try:
                await p.close()
            except Exception:
                log.exception("closing provider %s failed", p.name)
        for obj in list(self.state.values()):
            closer = getattr(obj, "aclose", None)
            if closer is not None and obj is not self.state.get("dispatcher"):
                try:
                    await closer()
                except Exception:
                    log.exception("closing %r failed", obj)
        await close_session()
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)
        if self._temp_spool is not None:
            import shutil

            shutil.rmtree(self._temp_spool, ignore_errors=True)

    async def call_model(
        self, ctx: Context, model: str, body: dict[str, Any], protocol: Protocol | None = None
    ) -> Reply:
        """Call configured `model` directly (no levers), for stages that need a side call:
        a cascade's next tier, a history summary, a shadow or judge request.

        `body` is in `protocol` (default `ctx.protocol`); the reply comes back in it too. Its
        cost is added to `ctx.extra["side_cost"]` so that the request's ledger row carries it.
        """
        from thrifty.pipeline.dispatch import dispatch_to

        return await dispatch_to(self, ctx, model, body, protocol)
