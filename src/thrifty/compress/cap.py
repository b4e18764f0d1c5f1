"""The `cap` stage: output tokens are the expensive ones, so bound them per route.

- `default_max_tokens` is set when the client sent no limit;
- `max_tokens` clamps a larger limit the client asked for;
- `concise` appends a short-answer instruction to the system prompt;
- `stop` adds stop sequences (OpenAI allows at most 4; Anthropic more).

A row where the cap lowered or set the limit carries `extra["capped"] = True`, so that
`truncation_by_route` (thrifty.compress.reports) can tell how often a capped answer ended
with `finish_reason: length` - a cap that is too tight shows up there. The saving of a cap
is not knowable per request (the answer that was not generated has no length), so it
records none; its effect shows in output tokens per route over time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.messages import SYSTEM_ROLES
from thrifty.pipeline.lever import Lever
from thrifty.types import Context, Handler, Reply, Wire

if TYPE_CHECKING:
    pass

CONCISE = "Answer concisely: give the answer without preamble, repetition or a closing summary."
OPENAI_MAX_STOP = 4


class CapSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    default_max_tokens: int | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    concise: bool = False
    concise_instruction: str = CONCISE
    stop: list[str] = Field(default_factory=list)


def _limit_key(protocol: Wire, body: dict[str, Any]) -> str:
    if protocol == "anthropic":
        return "max_tokens"
    if "max_completion_tokens" in body:
        return "max_completion_tokens"
    if "max_tokens" in body:
        return "max_tokens"
    model = str(body.get("model", ""))
    # OpenAI reasoning models only take max_completion_tokens.
    return "max_completion_tokens" if model.startswith(("o1", "o3", "o4", "gpt-5")) else "max_tokens"


def apply_cap(
    protocol: Wire, body: dict[str, Any], s: CapSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The capped body (a new dict when anything changed) and what was done."""
    new = dict(body)
    done: dict[str, Any] = {}
    key = _limit_key(protocol, body)
    asked = body.get(key)
    limit: int | None = asked if isinstance(asked, int) and not isinstance(asked, bool) else None
    if limit is None and s.default_max_tokens is not None:
        limit = s.default_max_tokens
    if s.max_tokens is not None and (limit is None or limit > s.max_tokens):
        limit = s.max_tokens
    if limit is not None and limit != asked:
        new[key] = limit
        done["max_tokens"] = {"asked": asked, "sent": limit}
    if s.stop:
        stop_key = "stop_sequences" if protocol == "anthropic" else "stop"
        current = body.get(stop_key)
        have = [current] if isinstance(current, str) else list(current or [])
        merged = have + [x for x in s.stop if x not in have]
        if protocol == "openai":
            merged = merged[:OPENAI_MAX_STOP]
        if merged != have:
            new[stop_key] = merged
            done["stop"] = merged
    if s.concise:
        new = _add_instruction(protocol, new, s.concise_instruction)
        done["concise"] = True
    return new, done


def _add_instruction(protocol: Wire, body: dict[str, Any], text: str) -> dict[str, Any]:
    if protocol == "anthropic":
        system = body.get("system")
        if isinstance(system, list):
            body["system"] = [*system, {"type": "text", "text": text}]
        elif system:
            body["system"] = f"{system}\n\n{text}"
        else:
            body["system"] = text
        return body
    messages = list(body.get("messages") or [])
    at = 0
    while at < len(messages) and isinstance(messages[at], dict) and messages[at].get("role") in SYSTEM_ROLES:
        at += 1
    # A system message of its own, after the client's, so that theirs stays a cacheable prefix.
    messages.insert(at, {"role": "system", "content": text})
    body["messages"] = messages
    return body


class CapStage(Lever[CapSettings]):
    name = "cap"
    Settings = CapSettings

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        s = self.settings(ctx.traffic)
        body, done = apply_cap(ctx.protocol, ctx.body, s)
        if done:
            ctx.body = body
            ctx.extra["cap"] = done
            if "max_tokens" in done:
                ctx.extra["capped"] = True
        return await next(ctx)
