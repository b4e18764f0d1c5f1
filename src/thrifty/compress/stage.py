"""The `compress` stage: fewer input tokens per request, per route.

It composes four sub-levers, each switchable per route under `compress:` and each
recording its own saving (`compress.fewshot`, `compress.history`, `compress.trim`,
`compress.context`) priced at the requested model's input rate:

1. fewshot - keep the k pool examples closest to the question;
2. history - summarise old turns of long conversations with a cheap model;
3. trim    - whitespace, separators, markup, duplicated instructions, boilerplate;
4. context - extractive compression of the RAG context in the last user message.

The stage works on a copy of the body and only swaps it in when something changed, so a
route with compression off, or a request with nothing to remove, reaches the provider
byte-identical.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.context import ContextSettings, compress_parts
from thrifty.compress.extract import Embedder
from thrifty.compress.fewshot import FewshotSettings, prune
from thrifty.compress.history import HistoryBudget, HistorySettings, SummaryCache
from thrifty.compress.messages import last_user_index, message_tokens_text, text_refs
from thrifty.compress.pricing import InputPrice, record_saving, requested_input_price
from thrifty.compress.trim import TrimSettings, trim_refs
from thrifty.ledger.tokens import count_text, estimate_request_tokens
from thrifty.pipeline.lever import Lever
from thrifty.protocol.view import answer_text
from thrifty.types import Context, Handler, Reply

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

log = logging.getLogger(__name__)


class CompressSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    trim: TrimSettings = Field(default_factory=TrimSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    fewshot: FewshotSettings = Field(default_factory=FewshotSettings)
    context: ContextSettings = Field(default_factory=ContextSettings)


class CompressStage(Lever[CompressSettings]):
    name = "compress"
    Settings = CompressSettings

    def __init__(
        self,
        gateway: Gateway,
        price: InputPrice = requested_input_price,
        embedder: Callable[[], Embedder] | None = None,
    ) -> None:
        super().__init__(gateway)
        self.price = price
        self._embedder_factory = embedder
        default = self.settings("default").history
        self.history = HistoryBudget(SummaryCache(default.cache_size, default.store))

    def embedder(self) -> Embedder:
        if self._embedder_factory is not None:
            return self._embedder_factory()
        from thrifty.embed import shared_embedder

        return shared_embedder()

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        settings = self.settings(ctx.traffic)
        if not isinstance(ctx.body.get("messages"), list):
            return await next(ctx)
        body = copy.deepcopy(ctx.body)
        # The prompt's size before compression: some models price long prompts higher.
        size = estimate_request_tokens(ctx.protocol, ctx.body)
        report: dict[str, Any] = {}
        changed = False
        try:
            if settings.fewshot.enabled and (settings.fewshot.pool):
                changed |= await self._fewshot(ctx, body, settings.fewshot, report, size)
            if settings.history.enabled:
                new = await self._history(ctx, body, settings.history, report, size)
                if new is not None:
                    body, changed = new, True
            if settings.trim.enabled:
                changed |= self._trim(ctx, body, settings.trim, report, size)
            if settings.context.enabled:
                changed |= await self._context(ctx, body, settings.context, report, size)
        except Exception as exc:  # a lever must never fail the request
            log.exception("compress failed; sending the request as it came")
            ctx.note(f"compress: failed ({type(exc).__name__}: {exc}); sent uncompressed")
            ctx.extra["compress"] = {"error": f"{type(exc).__name__}: {exc}"}
            return await next(ctx)
        if report:
            ctx.extra["compress"] = report
        if changed:
            ctx.body = body
        return await next(ctx)

    async def _fewshot(
        self, ctx: Context, body: dict[str, Any], s: FewshotSettings, report: dict[str, Any], size: int
    ) -> bool:
        q = last_user_index(body)
        if q is None:
            return False
        result = await asyncio.to_thread(prune, body["messages"], q, s, self.embedder())
        if result is None:
            return False
        kept, removed = result
        body["messages"] = kept
        tokens = sum(count_text(message_tokens_text(m)) for m in removed)
        record_saving(ctx, "compress.fewshot", tokens, self.price, size)
        report["fewshot"] = {"removed_messages": len(removed), "tokens": tokens}
        return True

    async def _history(
        self, ctx: Context, body: dict[str, Any], s: HistorySettings, report: dict[str, Any], size: int
    ) -> dict[str, Any] | None:
        async def summarize(model: str, request: dict[str, Any]) -> str | None:
            try:
                reply = await self.gateway.call_model(ctx, model, request)
            except Exception as exc:
                ctx.note(f"compress.history: summary call failed ({type(exc).__name__}: {exc})")
                return None
            if not reply.ok:
                ctx.note(f"compress.history: summary call returned {reply.status}")
                return None
            return answer_text(reply.body).strip() or None

        result = await self.history.apply(ctx.protocol, body, s, summarize)
        if result is None:
            return None
        new, tokens, note = result
        record_saving(ctx, "compress.history", tokens, self.price, size)
        report["history"] = {"tokens": tokens}
        ctx.note(note)
        return new

    def _trim(
        self, ctx: Context, body: dict[str, Any], s: TrimSettings, report: dict[str, Any], size: int
    ) -> bool:
        refs = text_refs(ctx.protocol, body)
        before = [r.text for r in refs]
        trim_refs(refs, s, last_user_index(body))
        tokens = 0
        changed = False
        for ref, old in zip(refs, before, strict=True):
            if ref.text != old:
                changed = True
                tokens += count_text(old) - count_text(ref.text)
        if changed:
            record_saving(ctx, "compress.trim", tokens, self.price, size)
            report["trim"] = {"tokens": tokens}
        return changed

    async def _context(
        self, ctx: Context, body: dict[str, Any], s: ContextSettings, report: dict[str, Any], size: int
    ) -> bool:
        q = last_user_index(body)
        if q is None:
            return False
        refs = [r for r in text_refs(ctx.protocol, body) if r.index == q]
        outcome = await asyncio.to_thread(compress_parts, [r.text for r in refs], s, self.embedder())
        report["context"] = {"result": outcome.reason}
        if outcome.texts is None:
            if outcome.reason.startswith("budget"):
                ctx.note(f"compress.context: {outcome.reason}")
            return False
        for ref, text in zip(refs, outcome.texts, strict=True):
            ref.text = text
        tokens = outcome.tokens_before - outcome.tokens_after
        record_saving(ctx, "compress.context", tokens, self.price, size)
        report["context"].update(tokens_before=outcome.tokens_before, tokens_after=outcome.tokens_after)
        return True
