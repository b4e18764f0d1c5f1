"""Reading a batch's input: JSONL (OpenAI) or a `requests` array (Anthropic), checked whole.

Every line is checked before anything is created, and the first bad one is refused with its
line number and reason (not JSON, no or duplicate `custom_id`, an endpoint thrifty does not
serve, a model that is not configured, a body the chat validators refuse, a file over the
size limit), so a job is never half-created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from thrifty.errors import BadRequest
from thrifty.server.validate import validate_anthropic, validate_openai
from thrifty.types import Wire

__all__ = ["ENDPOINTS", "Line", "parse_anthropic_requests", "parse_jsonl"]

#: Batch endpoints thrifty serves, and the wire protocol of their bodies.
ENDPOINTS: dict[str, Wire] = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, as a person counts lines
    custom_id: str
    body: dict[str, Any]


def _bad(number: int, reason: str, param: str) -> BadRequest:
    return BadRequest(f"line {number}: {reason}", param=param, code="invalid_batch_line")


def _check_body(number: int, wire: Wire, body: Any, known_model: Callable[[str], bool], param: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad(number, "'body' must be a JSON object", param)
    try:
        (validate_openai if wire == "openai" else validate_anthropic)(body)
    except BadRequest as exc:
        raise _bad(number, exc.message, param) from None
    if body.get("stream"):
        raise _bad(number, "'stream' must be false or absent in a batch", param)
    if not known_model(body["model"]):
        raise _bad(number, f"the model {str(body['model'])[:100]!r} is not configured in thrifty", param)
    return body


def parse_jsonl(raw: bytes, *, endpoint: str | None, known_model: Callable[[str], bool],
                max_bytes: int, max_lines: int, param: str = "input_file_id") -> tuple[Wire, list[Line]]:
    """The lines of an OpenAI batch input file. `endpoint` is the batch's (None: take it from
    the first line). Returns the wire protocol of the bodies and the lines in file order."""
    if len(raw) > max_bytes:
        raise BadRequest(f"the input file is {len(raw)} bytes; the limit is {max_bytes} (batch.max_file_bytes)",
                         param=param, status=413, code="file_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the input file is not UTF-8 (byte {exc.start})", param=param, code="invalid_file") from None
    lines: list[Line] = []
    seen: dict[str, int] = {}
    wire: Wire | None = ENDPOINTS.get(endpoint) if endpoint else None
    if endpoint is not None and wire is None:
        raise BadRequest(f"thrifty does not serve batches for the endpoint {endpoint!r}; it serves "
                         f"{', '.join(ENDPOINTS)}", param="endpoint", code="unsupported_endpoint")
    for number, row in enumerate(text.splitlines(), start=1):
        if not row.strip():
            continue
        try:
            item = orjson.loads(row)
        except orjson.JSONDecodeError as exc:
            raise _bad(number, f"not JSON ({exc})", param) from None
        if not isinstance(item, dict):
            raise _bad(number, "each line must be a JSON object", param)
        cid = item.get("custom_id")
        if not isinstance(cid, str) or not cid:
            raise _bad(number, "missing 'custom_id' (a non-empty string)", param)
        if cid in seen:
            raise _bad(number, f"duplicate custom_id {cid[:100]!r} (first on line {seen[cid]})", param)
        seen[cid] = number
        method = item.get("method", "POST")
        if method != "POST":
            raise _bad(number, f"'method' must be POST, not {str(method)[:20]!r}", param)
        url = item.get("url")
        line_wire = ENDPOINTS.get(url) if isinstance(url, str) else None
        if line_wire is None:
            raise _bad(number, f"thrifty does not serve batches for the url {str(url)[:100]!r}; it serves "
                       f"{', '.join(ENDPOINTS)}", param)
        if endpoint is not None and url != endpoint:
            raise _bad(number, f"url {url!r} differs from the batch's endpoint {endpoint!r}", param)
        if wire is None:
            wire, endpoint = line_wire, url
        elif line_wire != wire:
            raise _bad(number, f"url {url!r} differs from the first line's {endpoint!r}", param)
        lines.append(Line(number, cid, _check_body(number, line_wire, item.get("body"), known_model, param)))
        if len(lines) > max_lines:
            raise BadRequest(f"the input has more than {max_lines} lines (batch.max_lines)", param=param,
                             code="too_many_lines")
    if not lines or wire is None:
        raise BadRequest("the input file has no requests", param=param, code="empty_file")
    return wire, lines


def parse_anthropic_requests(body: Any, *, known_model: Callable[[str], bool], max_lines: int) -> list[Line]:
    """The `requests` of an Anthropic Message Batches create call."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
        raise BadRequest("'requests' must be a non-empty array", param="requests")
    reqs = body["requests"]
    if len(reqs) > max_lines:
        raise BadRequest(f"{len(reqs)} requests; the limit is {max_lines} (batch.max_lines)", param="requests")
    lines: list[Line] = []
    seen: dict[str, int] = {}
    for number, item in enumerate(reqs, start=1):
        if not isinstance(item, dict):
            raise _bad(number, "each request must be an object", "requests")
        cid = item.get("custom_id")
        if not isinstance(cid, str) or not cid:
            raise _bad(number, "missing 'custom_id' (a non-empty string)", "requests")
        if cid in seen:
            raise _bad(number, f"duplicate custom_id {cid[:100]!r} (first at request {seen[cid]})", "requests")
        seen[cid] = number
        lines.append(Line(number, cid, _check_body(number, "anthropic", item.get("params"), known_model, "requests")))
    return lines
