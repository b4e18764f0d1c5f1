"""Usage sanity: an upstream's implausible usage is kept as reported, flagged, and priced from an estimate.

An upstream once reported 1e30 input tokens: the parser clamped it to 10^9 and the row was
billed $1,000 without a word; usage of the wrong types (strings) read as 0 and was billed $0,
also silently. Neither is a bill anyone should trust. Usage is *implausible* when a count is
not a non-negative integer, or the counts add up to more than the model can take
(`max_usage_tokens`: the model's `max_usage_tokens`, else `DEFAULT_MAX_USAGE_TOKENS`,
above any model's context plus output), or a complete answer with text reports no tokens at
all. Then:

- the row's `extra.usage_implausible` holds what the upstream reported and why it was refused;
- the usage is estimated from the request and the answer's text (the same estimate as for a
  stream cut short) and the row is marked `usage_estimated`, priced from that estimate;
- `/metrics` counts it (`thrifty_usage_implausible_total`) and the log says so, once per
  model per minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from thrifty.types import Context, Usage

__all__ = ["DEFAULT_MAX_USAGE_TOKENS", "check_usage"]

log = logging.getLogger(__name__)

#: More tokens than any model's context window plus output limit (2M context models exist).
DEFAULT_MAX_USAGE_TOKENS = 4_000_000

_OPENAI_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
_ANTHROPIC_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_last_log: dict[str, float] = {}


def _bad_count(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"not a number ({type(value).__name__})"
    if isinstance(value, float) and not value.is_integer():
        return "not a whole number"
    if value < 0:
        return "negative"
    if value > limit:
        return f"over {limit} tokens"
    return None


def _plain(raw: Any, usage: Usage, limit: int) -> bool:
    """True for usage that needs no closer look: every reported count a small non-negative
    int, and some tokens (an answer with no tokens at all is checked against its text)."""
    if type(raw) is not dict:
        return False
    for value in raw.values():
        if type(value) is int:
            if not 0 <= value <= limit:
                return False
        elif type(value) is not dict and value is not None:  # *_details objects are not counts
            return False
    total = usage.total_input_tokens + usage.output_tokens
    return 0 < total <= limit


def problems(raw: Any, usage: Usage, limit: int, answer_tokens: Callable[[], int]) -> list[str]:
    """Why the usage an upstream reported cannot be billed; empty when it can."""
    found = []
    if raw is not None and not isinstance(raw, dict):
        found.append(f"usage is a {type(raw).__name__}, not an object")
    if isinstance(raw, dict):
        for name in (*_OPENAI_FIELDS, *_ANTHROPIC_FIELDS):
            why = _bad_count(raw.get(name), limit)
            if why:
                found.append(f"{name}: {why}")
    total = usage.total_input_tokens + usage.output_tokens
    if total > limit and not found:
        found.append(f"{total} tokens in all, over {limit}")
    if total == 0 and raw is not None and answer_tokens() > 0:
        found.append("no tokens for an answer with text")
    return found


def check_usage(ctx: Context, usage: Usage, raw: Any, *, answer_tokens: Callable[[], int],
                limit: int | None = None, model: str = "") -> Usage:
    """`usage`, or an estimate in its place when it is implausible (see the module docstring).

    `raw` is the usage object as the upstream sent it (None if unknown); `answer_tokens`
    estimates the tokens of the answer's text (called only when needed: it tokenizes)."""
    limit = limit or DEFAULT_MAX_USAGE_TOKENS
    if _plain(raw, usage, limit):  # the usual answer: whole, sane counts
        return usage
    found = problems(raw, usage, limit, answer_tokens)
    if not found:
        return usage
    from thrifty.ledger.tokens import estimate_request_tokens

    reported = raw if raw is not None else usage.to_dict()
    text = repr(reported)
    ctx.extra["usage_implausible"] = {"reported": text if len(text) <= 500 else text[:500] + "...",
                                      "problems": found[:5]}
    now = time.monotonic()
    if now - _last_log.get(model, -1e9) >= 60:
        _last_log[model] = now
        log.warning("model %s reported implausible usage (%s); priced from an estimate, flagged in the row "
                    "(further cases of this model counted on /metrics only, for a minute)", model, "; ".join(found[:3]))
    return Usage(input_tokens=estimate_request_tokens(ctx.protocol, ctx.body), output_tokens=answer_tokens(),
                 estimated=True)
