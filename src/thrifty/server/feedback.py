"""`POST /v1/thrifty/feedback`: record whether a task ended well, for cost per resolved task.

Requests of one task carry `X-Thrifty-Task: <id>` (the ledger keeps it in `task`); when the
task is over, the application posts {"task": id, "success": bool, "score"?: number,
"note"?: string}. Reports then divide spend by successful tasks as well as by requests.
Any valid key may post feedback; posting again for a task replaces its outcome.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import orjson
from aiohttp import web

from thrifty.gateway import Gateway
from thrifty.server.guard import error_response, require_key

MAX_TASK = 200
MAX_NOTE = 2000


class FeedbackError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_feedback(body: Any) -> tuple[str, bool, float | None, str | None]:
    """Validate a feedback body; FeedbackError names the field that is wrong."""
    if not isinstance(body, dict):
        raise FeedbackError("the body must be a JSON object {\"task\": ..., \"success\": ...}", "body")
    unknown = set(body) - {"task", "success", "score", "note"}
    if unknown:
        raise FeedbackError(f"unknown field {sorted(unknown)[0]!r}; allowed: task, success, score, note", sorted(unknown)[0])
    task = body.get("task")
    if not isinstance(task, str) or not task.strip() or len(task) > MAX_TASK:
        raise FeedbackError(f"`task` must be a non-empty string of at most {MAX_TASK} characters "
                            "(the X-Thrifty-Task header of the task's requests)", "task")
    success = body.get("success")
    if not isinstance(success, bool):
        raise FeedbackError("`success` must be true or false", "success")
    score = body.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)):
        raise FeedbackError("`score` must be a finite number", "score")
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise FeedbackError(f"`note` must be a string of at most {MAX_NOTE} characters", "note")
    return task, success, None if score is None else float(score), note


def setup(app: web.Application, gateway: Gateway) -> None:
    async def feedback(request: web.Request) -> web.StreamResponse:
        _, denied = require_key(request)
        if denied is not None:
            return denied
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            return error_response("openai", 400, f"the body is not valid JSON: {exc}")
        try:
            task, success, score, note = parse_feedback(body)
        except FeedbackError as exc:
            return error_response("openai", 400, str(exc), param=exc.param)
        ledger = gateway.ledger
        if ledger is None:
            return error_response("openai", 503, "the ledger is not open yet")
        ts = time.time()
        await asyncio.to_thread(ledger.store.record_outcome, task, success, score, note, ts)
        return web.json_response({"task": task, "success": success, "score": score, "recorded_at": ts})

    app.router.add_post("/v1/thrifty/feedback", feedback)
