"""The canonical key of a request: what makes two requests "the same question".

Two requests get the same key when everything that can change the answer is equal: the
model, the messages and system prompt, tools and tool choice, sampling parameters, response
format, stop sequences, `n`, and so on. Bookkeeping that cannot change the answer (`user`,
`metadata`, `stream`, `stream_options`, `store`, ...) is left out, so a request sent streaming
and the same one sent whole share a key. Keys are namespaced by tenant, so one tenant can
never be served another's answer, and by protocol, because the stored body is in it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from thrifty.types import Context

#: Request fields that never change what the model answers.
IGNORED_FIELDS = frozenset(
    {
        "user",
        "metadata",
        "stream",
        "stream_options",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)


def _normalise(value: Any) -> Any:
    """Make equal values serialise equally: 0 and 0.0, 1 and 1.0."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:  # orjson writes 64-bit ints only
        return int(value)
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical_request(body: dict[str, Any]) -> bytes:
    """The canonical JSON (sorted keys, no bookkeeping fields) of a request body."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    return orjson.dumps(_normalise(kept), option=orjson.OPT_SORT_KEYS)


def request_key(
    body: dict[str, Any], *, tenant: str, protocol: str, extra: dict[str, Any] | None = None
) -> str:
    """sha256 hex of tenant, protocol and the canonical request (plus `extra`, if given)."""
    digest = hashlib.sha256()
    digest.update(tenant.encode())
    digest.update(b"\x00")
    digest.update(protocol.encode())
    digest.update(b"\x00")
    digest.update(canonical_request(body))
    if extra:
        digest.update(b"\x00")
        digest.update(orjson.dumps(_normalise(extra), option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def context_key(ctx: Context, extra: dict[str, Any] | None = None) -> str:
    """The key of the request that `ctx` carries, in its tenant's namespace.

    A Responses request that may be passed through (`ctx.responses`) is keyed on its native
    body too: it holds what the chat form leaves out (reasoning items, built-in tools,
    `include`), and its answer is a `response` object, never to be served to a chat client."""
    if ctx.responses is not None:
        native = {k: v for k, v in ctx.responses.body.items() if k not in IGNORED_FIELDS}
        extra = {**(extra or {}), "responses": native}
    if ctx.endpoint != "chat":  # a text completion's answer is not a chat answer
        extra = {**(extra or {}), "endpoint": ctx.endpoint}
    return request_key(ctx.body, tenant=ctx.tenant, protocol=ctx.protocol, extra=extra)


def is_deterministic(body: dict[str, Any]) -> bool:
    """Whether the request asks for a repeatable answer: temperature 0, or a fixed seed.

    An absent temperature means the provider default (1), which is sampling.
    """
    if body.get("seed") is not None:
        return True
    temperature = body.get("temperature")
    return temperature is not None and not isinstance(temperature, bool) and float(temperature) == 0.0
