"""Error bodies in each protocol's own shape, and conversion of upstream errors between them.

SDKs pick their exception class from the HTTP status and show the body's message, so a
client must get its own protocol's shape even when the upstream spoke the other one.
`error_body` and `error_event` are the one place that turns a `ThriftyError` into what a
client reads, as a JSON body or as an SSE error event, for either protocol.
"""

from __future__ import annotations

import json
from typing import Any

from thrifty.errors import ThriftyError
from thrifty.types import SSEEvent, Wire

__all__ = [
    "anthropic_error",
    "anthropic_error_to_openai",
    "anthropic_error_type",
    "error_body",
    "error_event",
    "error_message",
    "openai_error",
    "openai_error_to_anthropic",
    "openai_error_type",
    "status_of_anthropic_error",
    "truncate",
]

#: Echoed client input (a model name, a field value) is cut to this many characters.
ECHO_LIMIT = 200


def truncate(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_STATUS = {kind: status for status, kind in _ANTHROPIC_TYPES.items()}

_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_OPENAI_KNOWN = {*_OPENAI_TYPES.values(), "invalid_request_error", "server_error"}
_ANTHROPIC_ONLY = set(_ANTHROPIC_STATUS) - _OPENAI_KNOWN


def anthropic_error_type(status: int) -> str:
    """The Anthropic error `type` for an HTTP status."""
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def status_of_anthropic_error(kind: str | None) -> int:
    """The HTTP status an Anthropic error `type` comes with (500 when unknown), for mid-stream errors."""
    return _ANTHROPIC_STATUS.get(kind or "", 500)


def openai_error_type(status: int) -> str:
    """The OpenAI error `type` for an HTTP status."""
    if status in _OPENAI_TYPES:
        return _OPENAI_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error(
    status: int, message: str, type: str | None = None, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body; `type` defaults to the one that goes with `status`."""
    return {
        "error": {"message": message, "type": type or openai_error_type(status), "param": param, "code": code}
    }


def anthropic_error(status: int, message: str, type: str | None = None) -> dict[str, Any]:
    """An Anthropic error body, its `type` chosen by `status` unless given."""
    return {"type": "error", "error": {"type": type or anthropic_error_type(status), "message": message}}


def error_body(wire: Wire, exc: ThriftyError) -> dict[str, Any]:
    """The body a client of `wire` gets for `exc`. An explicit `error_type` is kept only
    where it names a type of that protocol; otherwise the status chooses."""
    if wire == "anthropic":
        kind = exc.error_type if exc.error_type in _ANTHROPIC_STATUS else None
        return anthropic_error(exc.status, exc.message, kind)
    kind = exc.error_type if exc.error_type not in _ANTHROPIC_ONLY else None
    return openai_error(exc.status, exc.message, kind, param=exc.param, code=exc.code)


def error_event(wire: Wire, exc: ThriftyError) -> SSEEvent:
    """The SSE event that ends a stream that failed after its first byte."""
    body = error_body(wire, exc)
    if wire == "anthropic":
        return SSEEvent(event="error", data=body)
    return SSEEvent(data=body)


def _decode(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return body.strip()
    return body


def error_message(body: Any, default: str = "upstream error") -> str:
    """The human message inside an upstream error body of either shape (or of neither)."""
    body = _decode(body)
    if isinstance(body, str):
        return body or default
    if not isinstance(body, dict):
        return default
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):  # bare servers, FastAPI-style
        if isinstance(body.get(key), str):
            return body[key]
    return default


def _error_field(body: Any, key: str) -> str | None:
    body = _decode(body)
    error = body.get("error") if isinstance(body, dict) else None
    value = error.get(key) if isinstance(error, dict) else None
    return value if isinstance(value, str) else None


def anthropic_error_to_openai(status: int, body: Any) -> dict[str, Any]:
    """An upstream Anthropic error as an OpenAI error body; the Anthropic type becomes `code`."""
    return openai_error(status, error_message(body), code=_error_field(body, "type"))


def openai_error_to_anthropic(status: int, body: Any) -> dict[str, Any]:
    """An upstream OpenAI(-compatible) error as an Anthropic error body."""
    return anthropic_error(status, error_message(body))
