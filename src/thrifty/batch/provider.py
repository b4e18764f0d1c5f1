"""The `provider_batch` target: lines the levers could not answer go to the provider's own
batch API (OpenAI Batch, Anthropic Message Batches) and are billed at its discount.

Each line still runs through the gateway's levers; this module is the pipeline's terminal
instead of the ordinary dispatch. Lines that reach it are gathered into chunks, one
provider batch per chunk. A chunk is recorded in the store (its lines and a tag) *before*
it is submitted, and its provider id right after; after a crash, a line whose chunk is
recorded waits on that chunk again. A chunk recorded without an id (the crash fell between
the two writes) is looked for at the provider by its tag (OpenAI: the batch's metadata;
Anthropic, which has no metadata, by the custom ids of its requests, which carry the tag)
and submitted only if it is not there: never twice.

Lines a provider batch does not answer (partial results, an expired or failed batch) fall
back to ordinary calls at list price, so the job still completes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from thrifty.config import DEFAULT_BASE_URLS, ModelConfig
from thrifty.errors import ClientError, UpstreamError
from thrifty.ledger.prices import pricer
from thrifty.pipeline.dispatch import translate_request, translate_response
from thrifty.pipeline.pipeline import Pipeline
from thrifty.protocol.anthropic import usage_from_anthropic
from thrifty.protocol.openai import usage_from_openai
from thrifty.providers.transport import session
from thrifty.types import Context, Reply

if TYPE_CHECKING:
    from thrifty.batch.lane import BatchLane

__all__ = ["BatchAPI", "ProviderBatches"]

log = logging.getLogger(__name__)

#: What a waiting line gets: the provider's answer (status, body in its protocol), or None
#: when the provider batch did not answer it (fall back to an ordinary call).
Outcome = tuple[int, dict[str, Any]] | None


class BatchAPI:
    """A provider's batch API over HTTP, in its own shape (OpenAI or Anthropic)."""

    def __init__(self, cfg: ModelConfig, protocol: str) -> None:
        self.cfg = cfg
        self.protocol = protocol
        base = (cfg.base_url or DEFAULT_BASE_URLS.get(cfg.provider, "")).rstrip("/")
        if protocol == "anthropic":
            base = base.removesuffix("/v1") + "/v1"
        self.base = base

    def _headers(self, json_body: bool = True) -> dict[str, str]:
        headers = dict(self.cfg.headers)
        if json_body:
            headers["Content-Type"] = "application/json"
        key = self.cfg.api_key()
        if self.protocol == "anthropic":
            headers["anthropic-version"] = "2023-06-01"
            if key:
                headers["x-api-key"] = key
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _call(self, method: str, path: str, *, json: Any = None, data: Any = None, raw: bool = False) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout, connect=self.cfg.connect_timeout)
        try:
            async with session().request(method, self.base + path, headers=self._headers(data is None),
                                         data=orjson.dumps(json) if json is not None else data, timeout=timeout) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise UpstreamError(resp.status, f"{self.cfg.name} batch API: {method} {path}: "
                                        f"{body[:300].decode('utf-8', 'replace')}")
                return body if raw else orjson.loads(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(502, f"{self.cfg.name} batch API unreachable: {exc.__class__.__name__}") from None

    async def submit(self, tag: str, lines: list[tuple[int, dict[str, Any]]]) -> str:
        if self.protocol == "anthropic":
            reqs = [{"custom_id": f"{tag}-{idx}", "params": body} for idx, body in lines]
            return str((await self._call("POST", "/messages/batches", json={"requests": reqs}))["id"])
        text = "".join(orjson.dumps({"custom_id": f"{tag}-{idx}", "method": "POST", "url": "/v1/chat/completions",
                                     "body": body}).decode() + "\n" for idx, body in lines)
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", text.encode(), filename=f"{tag}.jsonl", content_type="application/jsonl")
        uploaded = await self._call("POST", "/files", data=form)
        batch = await self._call("POST", "/batches", json={
            "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h",
            "metadata": {"thrifty_tag": tag}})
        return str(batch["id"])

    async def find(self, tag: str, since: float) -> str | None:
        """The id of a batch submitted with `tag` (recorded at `since`), if the provider has one.

        OpenAI keeps the tag in the batch's metadata. Anthropic batches carry no metadata, so
        the batches created from `since` on are followed until they end and their results'
        custom ids (`<tag>-<line>`) say whether one is ours."""
        if self.protocol != "anthropic":
            listing = await self._call("GET", "/batches?limit=100")
            for b in listing.get("data") or []:
                if (b.get("metadata") or {}).get("thrifty_tag") == tag:
                    return str(b["id"])
            return None
        listing = await self._call("GET", "/messages/batches?limit=100")
        candidates = [str(b["id"]) for b in listing.get("data") or []
                      if _epoch(b.get("created_at")) >= since - 5]
        for batch_id in candidates:
            while True:
                b = await self._call("GET", f"/messages/batches/{batch_id}")
                if b.get("processing_status") == "ended":
                    break
                await asyncio.sleep(1.0)
            if not b.get("results_url"):
                continue
            raw = await self._call("GET", f"/messages/batches/{batch_id}/results", raw=True)
            first = raw.split(b"\n", 1)[0]
            if first.strip() and str(orjson.loads(first).get("custom_id", "")).startswith(f"{tag}-"):
                return batch_id
        return None

    async def poll(self, batch_id: str) -> tuple[bool, dict[int, tuple[int, dict[str, Any]]]]:
        """(ended, answers by line) of a provider batch; answers only once it ended."""
        if self.protocol == "anthropic":
            b = await self._call("GET", f"/messages/batches/{batch_id}")
            if b.get("processing_status") != "ended":
                return False, {}
            out: dict[int, tuple[int, dict[str, Any]]] = {}
            if b.get("results_url"):
                raw = await self._call("GET", f"/messages/batches/{batch_id}/results", raw=True)
                for row in raw.decode().splitlines():
                    if row.strip():
                        item = orjson.loads(row)
                        result = item.get("result") or {}
                        if result.get("type") == "succeeded":
                            out[_line_of(item["custom_id"])] = (200, result["message"])
            return True, out
        b = await self._call("GET", f"/batches/{batch_id}")
        if b.get("status") not in ("completed", "expired", "failed", "cancelled"):
            return False, {}
        out = {}
        if b.get("output_file_id"):
            raw = await self._call("GET", f"/files/{b['output_file_id']}/content", raw=True)
            for row in raw.decode().splitlines():
                if row.strip():
                    item = orjson.loads(row)
                    resp = item.get("response") or {}
                    if resp.get("status_code") == 200:
                        out[_line_of(item["custom_id"])] = (200, resp["body"])
        return True, out

    async def cancel(self, batch_id: str) -> None:
        path = f"/messages/batches/{batch_id}/cancel" if self.protocol == "anthropic" else f"/batches/{batch_id}/cancel"
        await self._call("POST", path, json={})


def _epoch(iso: Any) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _line_of(custom_id: str) -> int:
    return int(custom_id.rsplit("-", 1)[1])


class ProviderBatches:
    """Gathers lines into provider batches, polls them, and answers each waiting line."""

    #: Seconds a gathering chunk waits for more lines before it is submitted.
    GATHER = 0.3

    def __init__(self, lane: BatchLane) -> None:
        self.lane = lane
        self._waiters: dict[tuple[str, int], asyncio.Future[Outcome]] = {}
        self._gathering: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        self._flushers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._pollers: dict[tuple[str, int], asyncio.Task[None]] = {}
        #: Bodies of lines that joined a chunk whose poller was already running.
        self._pending_bodies: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    def pipeline(self, job: dict[str, Any]) -> Pipeline:
        base = self.lane.gateway.pipeline
        assert base is not None
        terminal: Callable[[Context], Awaitable[Reply]] = lambda ctx: self._terminal(job, ctx)  # noqa: E731
        return Pipeline(base.levers, self.lane.keeping(terminal), base.overrides)

    def api(self, cfg: ModelConfig) -> BatchAPI:
        provider = self.lane.gateway.providers[cfg.name]
        return BatchAPI(cfg, provider.protocol)

    async def _terminal(self, job: dict[str, Any], ctx: Context) -> Reply:
        gateway = self.lane.gateway
        model = ctx.target_model or ctx.requested_model
        cfg = gateway.config.model(model)
        idx = int(ctx.extra["batch"]["line"])
        if model not in self.lane.settings.provider_batch_models:  # routed elsewhere: an ordinary call
            assert gateway.dispatcher is not None
            return await gateway.dispatcher(ctx)
        provider = gateway.providers[model]
        native = {**translate_request(ctx.protocol, provider.protocol, ctx.body), "model": cfg.upstream_model}
        key = (job["id"], idx)
        future = self._waiters.get(key)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[key] = future
            await self._place(job, cfg, idx, native)
        outcome = await future
        self._waiters.pop(key, None)
        if outcome is None:
            current = await asyncio.to_thread(self.lane.store.get_job, job["id"])
            if current is not None and current["cancel_requested"]:
                raise ClientError("the batch was cancelled before the provider answered this line", status=499,
                                  code="batch_cancelled")
            ctx.note("provider batch gave no answer for this line: sent as an ordinary call")
            assert gateway.dispatcher is not None
            return await gateway.dispatcher(ctx)
        status, body = outcome
        usage = usage_from_anthropic(body.get("usage")) if provider.protocol == "anthropic" else usage_from_openai(body.get("usage"))
        list_cost = pricer.cost(cfg, usage)
        cost = pricer.cost(cfg, usage, batch=True)
        ctx.save("batch_api", list_cost - cost)
        ctx.extra["provider_batch"] = True
        reply = Reply(status=status, body=translate_response(provider.protocol, ctx.protocol, body), usage=usage,
                      served_model=cfg.name, provider=cfg.provider, cost=cost)
        return reply

    async def _place(self, job: dict[str, Any], cfg: ModelConfig, idx: int, native: dict[str, Any]) -> None:
        """Wait on the recorded chunk that holds line `idx`, or gather it into a new one."""
        store = self.lane.store
        async with self._lock:
            for chunk in await asyncio.to_thread(store.chunks, job["id"]):
                if idx in orjson.loads(chunk["line_idx"]):
                    self._watch(job, chunk, cfg, {idx: native})
                    return
            gkey = (job["id"], cfg.name)
            self._gathering.setdefault(gkey, []).append((idx, native))
            if len(self._gathering[gkey]) >= self.lane.settings.provider_batch_size:
                lines = self._gathering.pop(gkey)
                asyncio.create_task(self._submit(job, cfg, lines))
            elif gkey not in self._flushers or self._flushers[gkey].done():
                self._flushers[gkey] = asyncio.create_task(self._flush_later(job, cfg, gkey))

    async def _flush_later(self, job: dict[str, Any], cfg: ModelConfig, gkey: tuple[str, str]) -> None:
        seen = -1
        while True:  # submit once no new line arrived for GATHER seconds
            await asyncio.sleep(self.GATHER)
            async with self._lock:
                now = len(self._gathering.get(gkey, []))
                if now == seen or now == 0:
                    lines = self._gathering.pop(gkey, [])
                    break
                seen = now
        if lines:
            await self._submit(job, cfg, lines)

    async def _submit(self, job: dict[str, Any], cfg: ModelConfig, lines: list[tuple[int, dict[str, Any]]]) -> None:
        store = self.lane.store
        idxs = sorted(idx for idx, _ in lines)
        while True:
            chunks = await asyncio.to_thread(store.chunks, job["id"])
            number = max((c["chunk"] for c in chunks), default=-1) + 1
            tag = f"{job['id']}-c{number}"
            if await asyncio.to_thread(store.add_chunk, job["id"], number, cfg.name, tag, orjson.dumps(idxs).decode()):
                break
        chunk = {"job_id": job["id"], "chunk": number, "model": cfg.name, "tag": tag, "created_at": time.time(),
                 "provider_batch_id": None, "state": "submitting", "line_idx": orjson.dumps(idxs).decode()}
        self._watch(job, chunk, cfg, dict(lines))

    def _watch(self, job: dict[str, Any], chunk: dict[str, Any], cfg: ModelConfig,
               bodies: dict[int, dict[str, Any]]) -> None:
        key = (job["id"], int(chunk["chunk"]))
        task = self._pollers.get(key)
        if task is None or task.done():
            self._pollers[key] = asyncio.create_task(self._follow(job, dict(chunk), cfg, bodies))
        else:
            self._pending_bodies.setdefault(key, {}).update(bodies)

    async def _follow(self, job: dict[str, Any], chunk: dict[str, Any], cfg: ModelConfig,
                      bodies: dict[int, dict[str, Any]]) -> None:
        """Make sure the chunk is submitted (once), poll it, answer its waiting lines."""
        store = self.lane.store
        api = self.api(cfg)
        key = (job["id"], int(chunk["chunk"]))
        idxs: list[int] = orjson.loads(chunk["line_idx"])
        try:
            batch_id = chunk["provider_batch_id"]
            if batch_id is None:
                batch_id = await api.find(chunk["tag"], float(chunk["created_at"]))
                if batch_id is None:
                    # Not at the provider: submit it. Every line of the chunk must be here to be sent;
                    # lines of a recovered chunk that were not re-run yet are waited for.
                    deadline = time.monotonic() + self.lane.settings.lease_seconds * 2
                    while len(bodies) + len(self._pending_bodies.get(key, {})) < len(idxs) and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                    bodies = {**bodies, **self._pending_bodies.pop(key, {})}
                    missing = [i for i in idxs if i not in bodies]
                    if missing:
                        log.warning("batch %s chunk %s: %d lines not here to submit; they fall back",
                                    job["id"], chunk["chunk"], len(missing))
                    batch_id = await api.submit(chunk["tag"], [(i, bodies[i]) for i in idxs if i in bodies])
                await asyncio.to_thread(store.update_chunk, job["id"], chunk["chunk"],
                                        provider_batch_id=batch_id, state="submitted")
            while True:
                ended, answers = await api.poll(batch_id)
                if ended:
                    break
                await asyncio.sleep(self.lane.settings.poll_seconds)
            await asyncio.to_thread(store.update_chunk, job["id"], chunk["chunk"], state="ended")
            for idx in idxs:
                future = self._waiters.get((job["id"], idx))
                if future is not None and not future.done():
                    future.set_result(answers.get(idx))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("batch %s chunk %s: the provider batch failed (%s); its lines fall back", job["id"],
                        chunk["chunk"], exc)
            for idx in idxs:
                future = self._waiters.get((job["id"], idx))
                if future is not None and not future.done():
                    future.set_result(None)

    async def cancel(self, job_id: str) -> None:
        for chunk in await asyncio.to_thread(self.lane.store.chunks, job_id):
            if chunk["provider_batch_id"] and chunk["state"] == "submitted":
                try:
                    await self.api(self.lane.gateway.config.model(chunk["model"])).cancel(chunk["provider_batch_id"])
                except Exception as exc:
                    log.warning("batch %s: cancelling provider batch %s failed: %s", job_id,
                                chunk["provider_batch_id"], exc)

    async def aclose(self) -> None:
        tasks = [*self._pollers.values(), *self._flushers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

