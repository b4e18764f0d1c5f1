"""The batch lane's HTTP routes (the `batch` extension).

OpenAI: `POST /v1/files`, `GET /v1/files/{id}[/content]`, `POST /v1/batches`,
`GET /v1/batches[/{id}]`, `POST /v1/batches/{id}/cancel`. Anthropic: `POST
/v1/messages/batches`, `GET /v1/messages/batches[/{id}]`, `GET .../{id}/results`, `POST
.../{id}/cancel`. thrifty: `GET /v1/thrifty/batches/{id}/report`. The official SDKs' batch
calls work against them unchanged.

A key sees only its own files and jobs (an admin key sees all). Reading a job also settles
what is there to settle (its unbilled ledger rows, its files once every line is done), so a
client that polls first sees the same bill as the worker would write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from thrifty.batch.files import anthropic_batch, file_object, openai_batch
from thrifty.batch.inputs import ENDPOINTS, parse_anthropic_requests, parse_jsonl
from thrifty.batch.lane import BatchLane, parse_duration
from thrifty.errors import BadRequest, NotFound, ThriftyError, Unauthorized
from thrifty.gateway import Gateway
from thrifty.server.auth import Principal
from thrifty.server.guard import admin_only, error_response, principal_of
from thrifty.types import Wire

__all__ = ["LANE", "setup"]

log = logging.getLogger(__name__)


class _LaneHolder:
    """The lane, once the gateway has started (extensions are set up before it starts)."""

    def __init__(self) -> None:
        self.lane: BatchLane | None = None
        self.ready = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    async def get(self) -> BatchLane:
        await self.ready.wait()
        assert self.lane is not None
        return self.lane


LANE = web.AppKey("batch_lane", _LaneHolder)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=str), status=status, content_type="application/json")


Route = Callable[[web.Request, BatchLane, Principal], Awaitable[web.StreamResponse]]


def _route(wire: Wire, handler: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        if principal is None:
            return error_response(wire, Unauthorized("missing or invalid thrifty key", code="invalid_api_key"))
        try:
            return await handler(request, await request.app[LANE].get(), principal)
        except ThriftyError as exc:
            return error_response(wire, exc)

    return wrapped


def _owned(job: dict[str, Any] | None, principal: Principal, wire: Wire, job_id: str) -> dict[str, Any]:
    if job is None or job["protocol"] != wire or not (principal.admin or job["key_name"] == principal.name):
        raise NotFound(f"no batch {job_id[:100]!r}", code="not_found")
    return job


async def _fresh(lane: BatchLane, job_id: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The job after settling what is there to settle (ledger rows, files), and its counts."""
    await lane.bill(job_id)
    await lane.finalize(job_id)
    job = await asyncio.to_thread(lane.store.get_job, job_id)
    assert job is not None
    return job, await asyncio.to_thread(lane.store.counts, job_id)


# -- OpenAI files -----------------------------------------------------------------------


async def upload_file(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    limit = lane.settings.max_file_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise BadRequest(f"the file is over the limit of {limit} bytes (batch.max_file_bytes)", param="file",
                         status=413, code="file_too_large")
    try:
        form = await request.post()
    except ValueError as exc:
        raise BadRequest(f"send the file as multipart/form-data ({exc})", param="file") from None
    purpose = form.get("purpose")
    if purpose != "batch":
        raise BadRequest(f"thrifty keeps files for batches only (purpose 'batch', not {str(purpose)[:40]!r})",
                         param="purpose")
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise BadRequest("missing the 'file' part", param="file")
    raw = upload.file.read()
    if len(raw) > limit:
        raise BadRequest(f"the file is {len(raw)} bytes; the limit is {limit} (batch.max_file_bytes)", param="file",
                         status=413, code="file_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the file is not UTF-8 (byte {exc.start})", param="file") from None
    file_id = f"file-{uuid.uuid4().hex[:24]}"
    owner = principal.name or ""
    created = await asyncio.to_thread(lane.store.put_file, file_id, f"batch:{owner}", upload.filename or "input.jsonl", text)
    return _json(file_object({**created, "purpose": "batch"}))


def _file_owned(f: dict[str, Any] | None, principal: Principal, file_id: str) -> dict[str, Any]:
    if f is None:
        raise NotFound(f"no file {file_id[:100]!r}", code="not_found")
    owner = f["purpose"].partition(":")[2] if f["purpose"].startswith("batch:") else None
    if not principal.admin and owner is not None and owner != (principal.name or ""):
        raise NotFound(f"no file {file_id[:100]!r}", code="not_found")
    return f


async def get_file(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    file_id = request.match_info["id"]
    f = _file_owned(await asyncio.to_thread(lane.store.get_file, file_id), principal, file_id)
    purpose = "batch" if f["purpose"].startswith("batch:") else f["purpose"]
    return _json(file_object({**f, "purpose": purpose}))


async def file_content(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    file_id = request.match_info["id"]
    f = _file_owned(await asyncio.to_thread(lane.store.get_file, file_id, content=True), principal, file_id)
    return web.Response(body=f["content"].encode(), content_type="application/octet-stream")


# -- OpenAI batches ---------------------------------------------------------------------


def _known_model(lane: BatchLane) -> Callable[[str], bool]:
    aliases = lane.gateway.aliases
    return lambda m: lane.gateway.config.has_model(m) or (aliases is not None and aliases(m))


async def create_batch(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS or ENDPOINTS[endpoint] != "openai":
        raise BadRequest(f"thrifty does not serve batches for the endpoint {str(endpoint)[:100]!r} here; "
                         "use /v1/chat/completions (Anthropic batches: POST /v1/messages/batches)",
                         param="endpoint", code="unsupported_endpoint")
    window = body.get("completion_window", "24h")
    try:
        deadline = parse_duration(str(window))
    except ValueError as exc:
        raise BadRequest(str(exc), param="completion_window") from None
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("'metadata' must be an object", param="metadata")
    file_id = str(body.get("input_file_id") or "")
    f = _file_owned(await asyncio.to_thread(lane.store.get_file, file_id, content=True), principal, file_id)
    wire, lines = parse_jsonl(f["content"].encode(), endpoint=endpoint, known_model=_known_model(lane),
                              max_bytes=lane.settings.max_file_bytes, max_lines=lane.settings.max_lines)
    job = await lane.submit(wire=wire, endpoint=endpoint, lines=lines, key_name=principal.name,
                            tenant=principal.tenant, deadline_s=deadline, metadata=metadata, input_file_id=file_id)
    return _json(openai_batch(job, await asyncio.to_thread(lane.store.counts, job["id"])))


async def get_batch(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    job_id = request.match_info["id"]
    _owned(await asyncio.to_thread(lane.store.get_job, job_id), principal, "openai", job_id)
    job, counts = await _fresh(lane, job_id)
    return _json(openai_batch(job, counts))


async def list_batches(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    try:
        limit = max(1, min(100, int(request.query.get("limit", "20"))))
    except ValueError:
        raise BadRequest("'limit' must be a number", param="limit") from None
    jobs = await asyncio.to_thread(lane.store.list_jobs, "openai", limit + 1, request.query.get("after"))
    jobs = [j for j in jobs if principal.admin or j["key_name"] == principal.name]
    data = [openai_batch(j, await asyncio.to_thread(lane.store.counts, j["id"])) for j in jobs[:limit]]
    return _json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                  "last_id": data[-1]["id"] if data else None, "has_more": len(jobs) > limit})


async def cancel_batch(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    job_id = request.match_info["id"]
    _owned(await asyncio.to_thread(lane.store.get_job, job_id), principal, "openai", job_id)
    await lane.cancel(job_id)
    job, counts = await _fresh(lane, job_id)
    return _json(openai_batch(job, counts))


# -- Anthropic message batches ------------------------------------------------------------


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def create_message_batch(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    lines = parse_anthropic_requests(body, known_model=_known_model(lane), max_lines=lane.settings.max_lines)
    raw_len = request.content_length or 0
    if raw_len > lane.settings.max_file_bytes:
        raise BadRequest(f"the batch is {raw_len} bytes; the limit is {lane.settings.max_file_bytes}", status=413)
    job = await lane.submit(wire="anthropic", endpoint="/v1/messages", lines=lines, key_name=principal.name,
                            tenant=principal.tenant, deadline_s=24 * 3600.0, prefix="msgbatch_")
    return _json(anthropic_batch(job, await asyncio.to_thread(lane.store.counts, job["id"]), _base_url(request)))


async def get_message_batch(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    job_id = request.match_info["id"]
    _owned(await asyncio.to_thread(lane.store.get_job, job_id), principal, "anthropic", job_id)
    job, counts = await _fresh(lane, job_id)
    return _json(anthropic_batch(job, counts, _base_url(request)))


async def list_message_batches(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    try:
        limit = max(1, min(100, int(request.query.get("limit", "20"))))
    except ValueError:
        raise BadRequest("'limit' must be a number", param="limit") from None
    jobs = await asyncio.to_thread(lane.store.list_jobs, "anthropic", limit + 1, request.query.get("after_id"))
    jobs = [j for j in jobs if principal.admin or j["key_name"] == principal.name]
    data = [anthropic_batch(j, await asyncio.to_thread(lane.store.counts, j["id"]), _base_url(request))
            for j in jobs[:limit]]
    return _json({"data": data, "has_more": len(jobs) > limit, "first_id": data[0]["id"] if data else None,
                  "last_id": data[-1]["id"] if data else None})


async def message_batch_results(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    job_id = request.match_info["id"]
    _owned(await asyncio.to_thread(lane.store.get_job, job_id), principal, "anthropic", job_id)
    job, _counts = await _fresh(lane, job_id)
    if job["output_file_id"] is None:
        raise BadRequest(f"the batch {job_id!r} has not ended yet; its results come when it has", status=404)
    f = await asyncio.to_thread(lane.store.get_file, job["output_file_id"], content=True)
    assert f is not None
    return web.Response(body=f["content"].encode(), content_type="application/binary")


async def cancel_message_batch(request: web.Request, lane: BatchLane, principal: Principal) -> web.StreamResponse:
    job_id = request.match_info["id"]
    _owned(await asyncio.to_thread(lane.store.get_job, job_id), principal, "anthropic", job_id)
    await lane.cancel(job_id)
    job, counts = await _fresh(lane, job_id)
    return _json(anthropic_batch(job, counts, _base_url(request)))


# -- thrifty ----------------------------------------------------------------------------


async def report(request: web.Request) -> web.StreamResponse:
    lane = await request.app[LANE].get()
    job_id = request.match_info["id"]
    try:
        await _fresh(lane, job_id)
        return _json(await lane.report(job_id))
    except (KeyError, AssertionError):
        return error_response("openai", NotFound(f"no batch {job_id[:100]!r}", code="not_found"))


def setup(app: web.Application, gateway: Gateway) -> None:
    """Add the batch routes, and run the batch worker inside the server (`batch.worker`)."""
    holder = _LaneHolder()
    app[LANE] = holder
    r = app.router
    r.add_post("/v1/files", _route("openai", upload_file))
    r.add_get("/v1/files/{id}", _route("openai", get_file))
    r.add_get("/v1/files/{id}/content", _route("openai", file_content))
    r.add_post("/v1/batches", _route("openai", create_batch))
    r.add_get("/v1/batches", _route("openai", list_batches))
    r.add_get("/v1/batches/{id}", _route("openai", get_batch))
    r.add_post("/v1/batches/{id}/cancel", _route("openai", cancel_batch))
    r.add_post("/v1/messages/batches", _route("anthropic", create_message_batch))
    r.add_get("/v1/messages/batches", _route("anthropic", list_message_batches))
    r.add_get("/v1/messages/batches/{id}", _route("anthropic", get_message_batch))
    r.add_get("/v1/messages/batches/{id}/results", _route("anthropic", message_batch_results))
    r.add_post("/v1/messages/batches/{id}/cancel", _route("anthropic", cancel_message_batch))
    r.add_get("/v1/thrifty/batches/{id}/report", admin_only(report))

    async def start_when_ready() -> None:
        while gateway.pipeline is None:  # the gateway starts after the extensions' hooks
            await asyncio.sleep(0.02)
        holder.lane = await asyncio.to_thread(BatchLane, gateway)
        gateway.services.batch = holder.lane
        holder.ready.set()
        if holder.lane.settings.worker:
            await holder.lane.serve_forever()

    async def on_startup(_app: web.Application) -> None:
        holder.worker = asyncio.create_task(start_when_ready())

    async def on_cleanup(_app: web.Application) -> None:
        if holder.worker is not None:
            holder.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await holder.worker
        if holder.lane is not None:
            await holder.lane.aclose()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
