"""The batch lane: submit a job, run its lines through the levers, settle each line once.

A job's lines are claimed with leases (see `thrifty.batch.store`) by any process that runs
`BatchLane.run_job`: the server's worker (`serve_forever`), `thrifty batch run|resume`, or
several replicas at once. Each line goes through the gateway's own levers (exact cache,
semantic cache, dedup, compression, caps, routing), so a line the cache answers costs
nothing, and only the rest reach an execution target:

- `calls`: ordinary upstream calls, within `batch.concurrency` and `batch.rate`;
- `engine`: the embedded engine, with as many lines in flight as it decodes at once;
- `provider_batch`: the provider's own batch API at its discount (`thrifty.batch.provider`).

A line that fails with 429 or 5xx is retried with backoff; one that fails for good goes to
the error file with its reason, and the job goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiolimiter import AsyncLimiter

from thrifty.batch.budget import budget_hook, worst_case
from thrifty.batch.files import job_files
from thrifty.batch.inputs import Line
from thrifty.batch.records import line_request_id, record_from_json, record_to_json
from thrifty.batch.settings import BatchSettings, batch_settings
from thrifty.batch.store import BatchStore
from thrifty.errors import ThriftyError, UpstreamError
from thrifty.ledger.record import from_pico, to_pico
from thrifty.ledger.rows import Bill, Ending, record_of
from thrifty.types import Context, Reply, Wire

if TYPE_CHECKING:
    from thrifty.gateway import Gateway
    from thrifty.pipeline.pipeline import Pipeline

__all__ = ["BatchLane", "parse_duration"]

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_duration(text: str) -> float:
    """Seconds in `90`, `90s`, `30m`, `24h` or `7d`."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 24h, 7d)") from None


class BatchLane:
    """Submits and runs batch jobs for one gateway."""

    def __init__(self, gateway: Gateway, store: BatchStore | None = None, settings: BatchSettings | None = None,
                 owner: str | None = None) -> None:
        self.gateway = gateway
        self.settings = settings or batch_settings(gateway.config.section("batch"))
        self.store = store or BatchStore(gateway.config.store)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.limiter = AsyncLimiter(self.settings.rate, 1) if self.settings.rate else None
        self._jobs: dict[str, asyncio.Task[str]] = {}
        from thrifty.batch.provider import ProviderBatches

        self.provider_batches = ProviderBatches(self)

    # -- submission ----------------------------------------------------------------------

    def choose_target(self, lines: Sequence[Line], deadline_s: float) -> str:
        models = {str(line.body.get("model")) for line in lines}
        cfg = self.gateway.config
        if (deadline_s >= self.settings.provider_batch_min_deadline
                and models <= set(self.settings.provider_batch_models)):
            return "provider_batch"
        if all(cfg.has_model(m) and cfg.model(m).provider == "local" for m in models):
            return "engine"
        return "calls"

    async def submit(self, *, wire: Wire, endpoint: str, lines: Sequence[Line], key_name: str | None = None,
                     tenant: str = "default", deadline_s: float = 24 * 3600.0, metadata: dict[str, Any] | None = None,
                     input_file_id: str | None = None, files: Sequence[tuple[str, str, str, str]] = (),
                     prefix: str = "batch_", target: str | None = None) -> dict[str, Any]:
        """Create a job with all its lines in one transaction; reserve its worst case first."""
        job_id = prefix + uuid.uuid4().hex[:24]
        reserve = sum((worst_case(self.gateway, wire, line.body) for line in lines), Decimal(0))
        hook = budget_hook(self.gateway)
        if hook is not None:
            await hook.reserve(job_id=job_id, key_name=key_name, tenant=tenant, amount=reserve)
        now = time.time()
        job = {
            "id": job_id, "protocol": wire, "endpoint": endpoint, "input_file_id": input_file_id,
            "status": "validating" if wire == "openai" else "in_progress",
            "target": target or self.choose_target(lines, deadline_s), "created_at": now,
            "deadline_at": now + deadline_s, "key_name": key_name, "tenant": tenant,
            "metadata": orjson.dumps(metadata or {}).decode(), "lines": len(lines), "reserved_pico": to_pico(reserve),
        }
        rows = [(i, line.custom_id, orjson.dumps(line.body).decode()) for i, line in enumerate(lines)]
        try:
            await asyncio.to_thread(self.store.create_job, job, rows, files)
        except BaseException:
            if hook is not None:
                await hook.release(job_id=job_id)
            raise
        created = await asyncio.to_thread(self.store.get_job, job_id)
        assert created is not None
        return created

    # -- running -------------------------------------------------------------------------

    def concurrency(self, job: dict[str, Any]) -> int:
        if job["target"] == "engine":
            # Full occupancy: every sequence the engine decodes at once, and as many waiting.
            sizes = [getattr(p, "settings", None) for p in self.gateway.providers.values() if p.config.provider == "local"]
            active = max((s.max_active + min(s.max_active, s.max_queue) for s in sizes if s is not None), default=8)
            return active
        if job["target"] == "provider_batch":
            return max(self.settings.concurrency, self.settings.provider_batch_size)
        return self.settings.concurrency

    def pipeline_for(self, job: dict[str, Any]) -> Pipeline:
        """The gateway's levers, ending in a terminal that keeps each upstream answer on its
        line the moment it arrives (`keeping`)."""
        from thrifty.pipeline.pipeline import Pipeline

        base = self.gateway.pipeline
        assert base is not None and self.gateway.dispatcher is not None, "the gateway is not started"
        if job["target"] == "provider_batch":
            return self.provider_batches.pipeline(job)
        return Pipeline(base.levers, self.keeping(self.gateway.dispatcher), base.overrides)

    def keeping(self, inner: Callable[[Context], Awaitable[Reply]]) -> Callable[[Context], Awaitable[Reply]]:
        """Wrap a pipeline's terminal so that a line's answer (and what it cost) is written to
        the store before it goes back up through the levers (where a cache stores it)."""

        async def terminal(ctx: Context) -> Reply:
            reply = await inner(ctx)
            if reply.ok and reply.stream is None and reply.body is not None:
                facts = ctx.extra["batch"]
                answer = {"status": reply.status, "body": reply.body, "usage": reply.usage.to_dict(),
                          "cost": str(reply.cost), "served_model": reply.served_model, "provider": reply.provider,
                          "savings": {k: str(v) for k, v in ctx.savings.items()}, "side_cost": str(ctx.side_cost),
                          "target_model": ctx.target_model, "provider_batch": bool(ctx.extra.get("provider_batch"))}
                await asyncio.to_thread(self.store.set_provisional, facts["job"], facts["line"],
                                        orjson.dumps(answer).decode())
            return reply

        return terminal

    async def run_job(self, job_id: str, progress: Progress | None = None) -> str:
        """Run the job's open lines until none is left; return the job's status. Safe to run
        in several processes at once, and again after a crash."""
        job = await asyncio.to_thread(self.store.get_job, job_id)
        if job is None:
            raise KeyError(job_id)
        if job["finished_at"] is not None:
            return str(job["status"])
        if job["started_at"] is None:
            await asyncio.to_thread(self.store.update_job, job_id, started_at=time.time(), status="in_progress")
        elif job["status"] == "validating":
            await asyncio.to_thread(self.store.update_job, job_id, status="in_progress")
        await self.reclaim_dead(job_id)
        await self.bill(job_id)
        pipeline = self.pipeline_for(job)
        limit = self.concurrency(job)
        running: dict[asyncio.Task[None], int] = {}
        renewer = asyncio.create_task(self._renew(job_id, running))
        try:
            while True:
                job = await asyncio.to_thread(self.store.get_job, job_id)
                assert job is not None
                if time.time() > job["deadline_at"]:
                    await self._expire(job)
                free = limit - len(running)
                claimed = []
                if free > 0 and not job["cancel_requested"]:
                    claimed = await asyncio.to_thread(self.store.claim, job_id, self.owner, free,
                                                      self.settings.lease_seconds)
                for idx, cid, body, provisional in claimed:
                    task = asyncio.create_task(self._line(job, pipeline, idx, cid, body, provisional))
                    running[task] = idx
                if not running:
                    counts = await asyncio.to_thread(self.store.counts, job_id)
                    if not counts.get("pending") and not counts.get("leased"):
                        break
                    if job["cancel_requested"] and not counts.get("pending"):
                        # another worker's lines: wait for them to settle (or their lease to pass)
                        pass
                    await asyncio.sleep(self.settings.poll_seconds)
                    continue
                done, _ = await asyncio.wait(running, timeout=self.settings.poll_seconds,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    if not task.cancelled() and task.exception() is not None:
                        log.error("batch %s: a line task failed inside thrifty", job_id, exc_info=task.exception())
                if done:
                    await self.bill(job_id)
                    if progress is not None:
                        progress(await self.progress(job_id))
        finally:
            renewer.cancel()
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        await self.bill(job_id)
        status = await self.finalize(job_id)
        if progress is not None:
            progress(await self.progress(job_id))
        return status

    async def reclaim_dead(self, job_id: str) -> int:
        """Give back at once the lines leased by workers of this host that are no longer
        running (their pid is gone), instead of waiting for their leases to pass."""
        host = socket.gethostname()
        freed = 0
        for owner in await asyncio.to_thread(self.store.lease_owners, job_id):
            name, _, rest = owner.partition(":")
            pid = rest.partition(":")[0]
            if name != host or not pid.isdigit() or owner == self.owner or _alive(int(pid)):
                continue
            freed += await asyncio.to_thread(self.store.release_owner, job_id, owner)
        return freed

    async def _renew(self, job_id: str, running: dict[asyncio.Task[None], int]) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await asyncio.to_thread(self.store.renew, job_id, self.owner, list(running.values()),
                                        self.settings.lease_seconds)
            except Exception:
                log.exception("batch %s: renewing leases failed", job_id)

    async def _expire(self, job: dict[str, Any]) -> None:
        for line in await asyncio.to_thread(self.store.lines, job["id"]):
            if line["state"] == "pending":
                await self._fail(job, line["idx"], line["custom_id"], orjson.loads(line["body"]), None,
                                 408, "expired", "the batch's deadline passed before this line ran", time.perf_counter())

    def context(self, job: dict[str, Any], idx: int, custom_id: str, body: dict[str, Any]) -> Context:
        meta = orjson.loads(job["metadata"]) if job["metadata"] else {}
        tags = {"batch": job["id"]}
        if isinstance(meta.get("route"), str):
            tags["route"] = meta["route"]
        ctx = Context(protocol=job["protocol"], body=body, config=self.gateway.config,
                      request_id=line_request_id(job["id"], idx), key_name=job["key_name"], tenant=job["tenant"],
                      tags=tags, requested_model=str(body.get("model", "")))
        ctx.extra["batch"] = {"job": job["id"], "line": idx, "custom_id": custom_id, "target": job["target"]}
        if self.gateway.config.ledger.store_bodies:
            ctx.original_body = body
        return ctx

    async def _line(self, job: dict[str, Any], pipeline: Pipeline, idx: int, custom_id: str, raw: str,
                    provisional: str | None = None) -> None:
        s = self.settings
        if provisional is not None:  # answered (and billed upstream) before a crash: settle it now
            await self._from_provisional(job, idx, custom_id, orjson.loads(raw), orjson.loads(provisional))
            return
        for attempt in range(s.max_attempts):
            body = orjson.loads(raw)
            body.pop("stream", None)
            ctx = self.context(job, idx, custom_id, body)
            started = time.perf_counter()
            try:
                if self.limiter is not None and job["target"] == "calls":
                    await self.limiter.acquire()
                reply = await pipeline(ctx)
                if reply.stream is not None:  # a lever answered with a stream: read it whole
                    async for _ev in reply.stream:
                        pass
                    raise UpstreamError(502, "the answer came as a stream; a batch line needs a body")
            except UpstreamError as exc:
                if exc.retryable and attempt + 1 < s.max_attempts:
                    wait = exc.retry_after if exc.retry_after is not None else s.retry_backoff * 2**attempt
                    await asyncio.sleep(min(wait, 60.0) * (0.5 + random.random() / 2))
                    continue
                await self._fail(job, idx, custom_id, body, ctx, exc.status, exc.code or exc.error_type or "upstream_error",
                                 exc.message, started)
                return
            except ThriftyError as exc:
                await self._fail(job, idx, custom_id, body, ctx, exc.status, exc.code or exc.error_type or "invalid_request",
                                 exc.message, started)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("batch %s line %d failed inside thrifty", job["id"], idx)
                await self._fail(job, idx, custom_id, body, ctx, 500, "internal_error",
                                 f"thrifty failed on this line ({exc.__class__.__name__})", started)
                return
            if not reply.ok:
                if (reply.status == 429 or reply.status >= 500) and attempt + 1 < s.max_attempts:
                    await asyncio.sleep(s.retry_backoff * 2**attempt)
                    continue
                await self._fail(job, idx, custom_id, body, ctx, reply.status, "upstream_error",
                                 f"the upstream answered {reply.status}", started, reply)
                return
            await self._succeed(job, idx, ctx, reply, started)
            return

    async def _from_provisional(self, job: dict[str, Any], idx: int, custom_id: str, body: dict[str, Any],
                                answer: dict[str, Any]) -> None:
        """Settle a line from the answer its terminal kept before the process died."""
        from thrifty.types import Usage

        ctx = self.context(job, idx, custom_id, body)
        ctx.target_model = answer["target_model"]
        ctx.side_cost = Decimal(answer["side_cost"])
        for lever, amount in answer["savings"].items():
            ctx.save(lever, Decimal(amount))
        if answer["provider_batch"]:
            ctx.extra["provider_batch"] = True
        ctx.note("settled after a restart from the answer kept when it arrived")
        reply = Reply(status=answer["status"], body=answer["body"], usage=Usage.from_dict(answer["usage"]),
                      served_model=answer["served_model"], provider=answer["provider"], cost=Decimal(answer["cost"]))
        await self._succeed(job, idx, ctx, reply, time.perf_counter())

    def where(self, job: dict[str, Any], ctx: Context, reply: Reply) -> str:
        if ctx.answered_by is not None and ctx.answered_by.value != "provider":
            return ctx.answered_by.value
        if ctx.extra.get("provider_batch"):
            return "provider_batch"
        if job["target"] == "engine":
            return "engine"
        return "calls"

    async def _succeed(self, job: dict[str, Any], idx: int, ctx: Context, reply: Reply, started: float) -> None:
        where = self.where(job, ctx, reply)
        ctx.extra["batch"]["executed"] = where
        record = record_of(ctx, reply, Ending(reply.status, "ok", None, started, None))
        bill = Bill.of(ctx, reply)
        won = await asyncio.to_thread(
            self.store.settle, job["id"], idx, state="done",
            answered_by=ctx.answered_by.value if ctx.answered_by is not None else "provider",
            executed_where=where, served_model=reply.served_model, status=reply.status,
            result=orjson.dumps(reply.body).decode(), error=None, cost_pico=to_pico(bill.cost),
            list_pico=to_pico(bill.counterfactual), ledger=record_to_json(record), billed=0)
        await self._settled(job, idx, won, bill.cost)

    async def _fail(self, job: dict[str, Any], idx: int, custom_id: str, body: dict[str, Any], ctx: Context | None,
                    status: int, code: str, reason: str, started: float, reply: Reply | None = None) -> None:
        ctx = ctx or self.context(job, idx, custom_id, body)
        ctx.extra["batch"]["error_code"] = code
        record = record_of(ctx, reply, Ending(status, "error", reason, started, None))
        bill = Bill.of(ctx, reply)
        won = await asyncio.to_thread(
            self.store.settle, job["id"], idx, state="failed", answered_by=None, executed_where=None,
            served_model=record.served_model, status=status,
            result=orjson.dumps({"code": code, "message": reason}).decode(), error=reason,
            cost_pico=to_pico(bill.cost), list_pico=to_pico(bill.counterfactual), ledger=record_to_json(record), billed=0)
        await self._settled(job, idx, won, bill.cost)

    async def _settled(self, job: dict[str, Any], idx: int, won: bool, cost: Decimal) -> None:
        if not won:
            log.info("batch %s line %d was settled by another worker first", job["id"], idx)
            return
        hook = budget_hook(self.gateway)
        if hook is not None:
            await hook.settle(job_id=job["id"], line=idx, cost=cost)

    async def bill(self, job_id: str) -> int:
        """Write the ledger rows of settled lines not billed yet; return how many."""
        ledger = self.gateway.ledger
        if ledger is None:
            return 0
        pending = await asyncio.to_thread(self.store.unbilled, job_id)
        if not pending:
            return 0
        from thrifty.ledger.writer import storable

        records = [storable(record_from_json(text)) for _idx, text in pending]
        await asyncio.to_thread(ledger.store.write, records)  # replaces a row of the same id
        await asyncio.to_thread(self.store.mark_billed, job_id, [idx for idx, _ in pending])
        return len(pending)

    async def finalize(self, job_id: str) -> str:
        """Once every line is settled: write the output and error files, end the job (once)."""
        job = await asyncio.to_thread(self.store.get_job, job_id)
        assert job is not None
        if job["finished_at"] is not None:
            return str(job["status"])
        counts = await asyncio.to_thread(self.store.counts, job_id)
        if counts.get("pending") or counts.get("leased"):
            return str(job["status"])
        lines = await asyncio.to_thread(self.store.lines, job_id)
        expired = any(line["error"] and line["status"] == 408 and line["state"] == "failed" for line in lines)
        status = "cancelled" if job["cancel_requested"] else ("expired" if expired else "completed")
        if job["protocol"] == "anthropic":
            status = "ended"
        output, errors = job_files(job, lines)
        won = await asyncio.to_thread(self.store.finish_job, job_id, status, output, errors)
        if won:
            hook = budget_hook(self.gateway)
            if hook is not None:
                await hook.release(job_id=job_id)
            if self.settings.webhook_url:
                await self._webhook(job_id)
        final = await asyncio.to_thread(self.store.get_job, job_id)
        assert final is not None
        return str(final["status"])

    async def _webhook(self, job_id: str) -> None:
        from thrifty.providers.transport import session

        try:
            assert self.settings.webhook_url is not None
            http = session()
            async with http.post(self.settings.webhook_url, data=orjson.dumps(await self.report(job_id), default=str),
                                 headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
        except Exception as exc:  # a webhook is a courtesy: never fail the job on it
            log.warning("batch %s: the completion webhook failed: %s", job_id, exc)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        await asyncio.to_thread(self.store.request_cancel, job_id)
        await self.provider_batches.cancel(job_id)
        await self.bill(job_id)
        await self.finalize(job_id)
        job = await asyncio.to_thread(self.store.get_job, job_id)
        assert job is not None
        return job

    # -- the server's worker -------------------------------------------------------------

    async def serve_forever(self) -> None:
        """Run every unfinished job of the store, as they come (one task per job)."""
        while True:
            try:
                for job_id in await asyncio.to_thread(self.store.unfinished_jobs):
                    task = self._jobs.get(job_id)
                    if task is None or task.done():
                        self._jobs[job_id] = asyncio.create_task(self.run_job(job_id))
                for job_id, task in list(self._jobs.items()):
                    if task.done():
                        del self._jobs[job_id]
                        if not task.cancelled() and task.exception() is not None:
                            log.error("batch %s failed", job_id, exc_info=task.exception())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the batch worker failed to look for jobs")
            await asyncio.sleep(self.settings.poll_seconds)

    async def aclose(self) -> None:
        for task in self._jobs.values():
            task.cancel()
        await asyncio.gather(*self._jobs.values(), return_exceptions=True)
        await self.provider_batches.aclose()
        await asyncio.to_thread(self.store.close)

    # -- reading -------------------------------------------------------------------------

    async def progress(self, job_id: str) -> dict[str, Any]:
        counts = await asyncio.to_thread(self.store.counts, job_id)
        cost, listed = await asyncio.to_thread(self.store.money, job_id)
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in ("done", "failed", "cancelled", "expired"))
        failed = counts.get("failed", 0) + counts.get("expired", 0)
        return {"total": total, "done": done, "failed": failed, "cost": from_pico(cost),
                "list_cost": from_pico(listed)}

    async def report(self, job_id: str) -> dict[str, Any]:
        from thrifty.batch.report import job_report

        job = await asyncio.to_thread(self.store.get_job, job_id)
        if job is None:
            raise KeyError(job_id)
        lines = await asyncio.to_thread(self.store.lines, job_id)
        return job_report(job, lines)
