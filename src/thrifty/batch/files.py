"""Output and error files in the protocols' own formats, and the job objects the SDKs read.

OpenAI: one JSONL line per request, `{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}`; answered lines in the output file and failed ones in the
error file, both in input order. Anthropic: one results file, `{"custom_id", "result":
{"type": "succeeded" | "errored" | "canceled" | "expired", ...}}`. Each line also carries
`thrifty` (who answered it, and its cost), which readers of either format ignore.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from thrifty.ledger.record import from_pico

__all__ = ["anthropic_batch", "file_object", "job_files", "openai_batch"]


def _mark(line: dict[str, Any]) -> dict[str, Any]:
    return {"answered_by": line["answered_by"], "executed": line["executed_where"],
            "cost": str(from_pico(line["cost_pico"])), "list_cost": str(from_pico(line["list_pico"]))}


def _openai_line(job: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    rid = f"req_{job['id']}_{line['idx']:07d}"
    out: dict[str, Any] = {"id": f"batch_req_{job['id'][-12:]}{line['idx']:07d}", "custom_id": line["custom_id"]}
    if line["state"] == "done":
        out["response"] = {"status_code": line["status"], "request_id": rid, "body": orjson.loads(line["result"])}
        out["error"] = None
    else:
        result = orjson.loads(line["result"]) if line["result"] else {}
        code = result.get("code") or ("batch_cancelled" if line["state"] == "cancelled" else "error")
        message = line["error"] or result.get("message") or "the line failed"
        if line["status"] == 408:
            code = "batch_expired"
        out["response"] = None
        out["error"] = {"code": code, "message": message}
    out["thrifty"] = _mark(line)
    return out


def _anthropic_line(line: dict[str, Any]) -> dict[str, Any]:
    if line["state"] == "done":
        result: dict[str, Any] = {"type": "succeeded", "message": orjson.loads(line["result"])}
    elif line["state"] == "cancelled":
        result = {"type": "canceled"}
    elif line["status"] == 408:
        result = {"type": "expired"}
    else:
        kind = "invalid_request_error" if line["status"] and 400 <= line["status"] < 500 and line["status"] != 429 else "api_error"
        result = {"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": line["error"] or "failed"}}}
    return {"custom_id": line["custom_id"], "result": result, "thrifty": _mark(line)}


def _jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(orjson.dumps(i).decode() + "\n" for i in items)


def job_files(job: dict[str, Any], lines: list[dict[str, Any]]) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """(output file, error file) of a finished job, each (file id, content) or None."""
    if job["protocol"] == "anthropic":
        return (f"file-{uuid.uuid4().hex[:24]}", _jsonl([_anthropic_line(line) for line in lines])), None
    ok = [_openai_line(job, line) for line in lines if line["state"] == "done"]
    bad = [_openai_line(job, line) for line in lines if line["state"] != "done"]
    output = (f"file-{uuid.uuid4().hex[:24]}", _jsonl(ok)) if ok else None
    errors = (f"file-{uuid.uuid4().hex[:24]}", _jsonl(bad)) if bad else None
    return output, errors


def file_object(f: dict[str, Any]) -> dict[str, Any]:
    return {"id": f["id"], "object": "file", "bytes": int(f["bytes"]), "created_at": int(f["created_at"]),
            "filename": f["filename"], "purpose": f["purpose"], "status": "processed", "status_details": None}


_OPENAI_STATUS = {"validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"}


def openai_batch(job: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    status = job["status"] if job["status"] in _OPENAI_STATUS else "in_progress"
    ended = job["finished_at"]
    return {
        "id": job["id"], "object": "batch", "endpoint": job["endpoint"], "errors": None,
        "input_file_id": job["input_file_id"] or "", "completion_window": "24h", "status": status,
        "output_file_id": job["output_file_id"], "error_file_id": job["error_file_id"],
        "created_at": int(job["created_at"]),
        "in_progress_at": int(job["started_at"]) if job["started_at"] else None,
        "expires_at": int(job["deadline_at"]),
        "finalizing_at": int(ended) if ended else None,
        "completed_at": int(ended) if ended and status == "completed" else None,
        "failed_at": None,
        "expired_at": int(ended) if ended and status == "expired" else None,
        "cancelling_at": int(ended) if ended and status == "cancelled" else None,
        "cancelled_at": int(ended) if ended and status == "cancelled" else None,
        "request_counts": {"total": total, "completed": counts.get("done", 0),
                           "failed": counts.get("failed", 0) + counts.get("cancelled", 0) + counts.get("expired", 0)},
        "metadata": orjson.loads(job["metadata"]) or None,
    }


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts else None


def anthropic_batch(job: dict[str, Any], counts: dict[str, int], base_url: str) -> dict[str, Any]:
    ended = job["finished_at"] is not None
    expired = counts.get("expired", 0)
    status = "ended" if ended else ("canceling" if job["cancel_requested"] else "in_progress")
    return {
        "id": job["id"], "type": "message_batch", "processing_status": status,
        "request_counts": {
            "processing": counts.get("pending", 0) + counts.get("leased", 0),
            "succeeded": counts.get("done", 0),
            "errored": counts.get("failed", 0),
            "canceled": counts.get("cancelled", 0),
            "expired": expired,
        },
        "ended_at": _iso(job["finished_at"]), "created_at": _iso(job["created_at"]),
        "expires_at": _iso(job["deadline_at"]),
        "cancel_initiated_at": _iso(job["finished_at"]) if job["cancel_requested"] else None,
        "archived_at": None,
        "results_url": f"{base_url}/v1/messages/batches/{job['id']}/results" if ended else None,
    }
