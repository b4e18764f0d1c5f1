"""thrifty's error hierarchy: every error thrifty raises on purpose derives from one base.

```
ThriftyError                      status, error_type, message (what the client is told)
├── ClientError                   the request is wrong; 4xx
│   ├── BadRequest                400 (413 for a body over the limit)
│   ├── Unauthorized              401: no key, or an unknown, revoked or expired one
│   ├── Forbidden                 403: a valid key without the right
│   ├── NotFound                  404: unknown model, route or object
│   ├── RateLimited               429, with the seconds to wait
│   └── TranslationError          400: the request uses a feature the target protocol lacks
├── UpstreamError                 a provider failed before any byte reached the client; 5xx
│                                 (or the upstream's own status); keeps every attempt's error
├── ConfigError                   a configuration problem, phrased so a person can fix it
│   └── StoreUnreachable          a durable store named in the config cannot be reached at start
└── DataError                     a data file (eval set, labeled set, artifact) is malformed
```

Stages raise these; they never return error replies. `thrifty.protocol.errors` is the one
place that turns an error into a client's body or SSE error event, whatever its protocol.
This module imports nothing of thrifty, so every layer may raise from it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "ClientError",
    "ConfigError",
    "DataError",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "StoreUnreachable",
    "ThriftyError",
    "TranslationError",
    "Unauthorized",
    "UpstreamError",
]


class ThriftyError(Exception):
    """The base: an HTTP `status`, a protocol-neutral `error_type` (None: chosen by status),
    a `message` a person can act on, and optionally the request `param` and a machine `code`."""

    status: int = 500
    error_type: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})


class ClientError(ThriftyError):
    """The request is at fault; resending it unchanged will fail the same way."""

    status = 400


class BadRequest(ClientError):
    """A malformed or unacceptable request (the status may be 413 for a body over the limit)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message, status=status, param=param, code=code)


class Unauthorized(ClientError):
    """No valid key. The message never says which part of a presented key was wrong."""

    status = 401
    error_type = "authentication_error"


class Forbidden(ClientError):
    status = 403
    error_type = "permission_error"


class NotFound(ClientError):
    status = 404
    error_type = "not_found_error"


class RateLimited(ClientError):
    """Over a rate limit or budget; `retry_after` seconds until a retry may pass (None: unknown)."""

    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(message, code=code, headers=headers)
        self.retry_after = retry_after


class TranslationError(ClientError, ValueError):
    """The request uses a feature that the target protocol cannot express."""


class UpstreamError(ThriftyError):
    """A provider failed before any byte of its answer reached the client.

    `status` and `message` are what the client sees (the upstream's own, where it gave
    them); `retryable` says whether trying again may help; `retry_after` is the wait in
    seconds the upstream asked for, if any; `attempts` keeps the error of every attempt
    (retries and fallbacks), oldest first, when there were several.
    """

    status = 502

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        error_type: str | None = None,
        body: dict[str, Any] | None = None,
        attempts: list[UpstreamError] | None = None,
        code: str | None = None,
    ) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(message, status=status, error_type=error_type, code=code, headers=headers)
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body
        self.attempts: list[UpstreamError] = list(attempts or [])


class ConfigError(ThriftyError):
    """A configuration problem, phrased so that a person can fix it."""

    status = 500


class StoreUnreachable(ConfigError):
    """A durable store (the ledger's database, a pgvector index) does not answer at start:
    `thrifty serve` refuses to start half-configured rather than lose what it must keep."""

    status = 503


class DataError(ThriftyError, ValueError):
    """A data file thrifty reads (an eval set, labeled data, an artifact) is malformed."""

    status = 400
