"""The `canonicalize` stage: tags, stable JSON, and prompt-cache breakpoints.

Provider prefix caches (OpenAI's automatic one, Anthropic's `cache_control`) only hit when
the start of a prompt is the same bytes as before. This stage:

- fills tags the server did not set (route, feature, task) from the context's
  `x-thrifty-*` headers and the body's `metadata`, for requests that reach the pipeline
  without the HTTP server (batch, replay); tags already set are never overridden;
- sorts the keys of JSON objects whose order carries no meaning - tool parameter schemas
  and `response_format` schemas - so that clients that build them from dicts in varying
  order still send one prefix. The order of a schema's `properties` is left alone by
  default (structured outputs generate fields in that order), lists are never reordered,
  and messages never are;
- optionally sorts the tool list by name (`sort_tools`);
- for Anthropic models, when the route allows (`cache_control: true`), puts
  `cache_control` breakpoints at the end of long stable prefixes: the tools and system
  prompt, long documents, and the conversation so far (at most 4 in all, counting the
  client's own), only where the prefix is long enough to be cached (`min_prefix_tokens`).

When the provider then reports cache reads and writes, the saving (reads at the cache
price instead of the input price, minus the write premium) is recorded as `canonicalize`.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.messages import last_user_index
from thrifty.ledger.prices import MTOK, pricer
from thrifty.ledger.tokens import count_text
from thrifty.pipeline.lever import Lever
from thrifty.types import Context, EventStream, Handler, Reply, Usage

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MAX_BREAKPOINTS = 4
TAG_HEADER_PREFIX = "x-thrifty-"


class CanonicalizeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sort_keys: bool = True
    #: Also sort the names under a schema's `properties` (changes structured-output field order).
    sort_properties: bool = False
    sort_tools: bool = False
    #: Anthropic prompt-cache breakpoints.
    cache_control: bool = False
    min_prefix_tokens: int = Field(default=1024, ge=0)
    max_breakpoints: int = Field(default=MAX_BREAKPOINTS, ge=1, le=MAX_BREAKPOINTS)
    ttl: Literal["5m", "1h"] = "5m"
    cache_documents: bool = True
    cache_history: bool = True


# -- tags ---------------------------------------------------------------------------------


def read_tags(ctx: Context) -> None:
    """Fill `ctx.tags` from headers and body metadata, never overriding tags already set."""
    headers = {k.lower(): v for k, v in ctx.headers.items()}
    found: dict[str, str] = {}
    raw = headers.get(TAG_HEADER_PREFIX + "tags", "")
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() and value.strip():
            found[key.strip()] = value.strip()
    for key in ("route", "feature", "task"):
        header = headers.get(TAG_HEADER_PREFIX + key)
        if header:
            found[key] = header.strip()
    metadata = ctx.body.get("metadata")
    if isinstance(metadata, dict):
        for key in ("route", "feature", "task"):
            meta = metadata.get(key)
            if isinstance(meta, str) and meta and key not in found:
                found[key] = meta
    for key, value in found.items():
        ctx.tags.setdefault(key, value)


# -- stable JSON ----------------------------------------------------------------------------


def sort_schema(value: Any, sort_properties: bool = False) -> Any:
    """`value` with object keys sorted at every level; the names under `properties` keep
    their order unless `sort_properties`; lists keep their order."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            child = value[key]
            if key == "properties" and isinstance(child, dict) and not sort_properties:
                out[key] = {k: sort_schema(v, sort_properties) for k, v in child.items()}
            else:
                out[key] = sort_schema(child, sort_properties)
        return out
    if isinstance(value, list):
        return [sort_schema(v, sort_properties) for v in value]
    return value


def canonical_body(body: dict[str, Any], s: CanonicalizeSettings) -> dict[str, Any]:
    """A body whose schemas have stable key order (and tools a stable order, if asked)."""
    new = dict(body)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        fixed = []
        for tool in tools:
            if not isinstance(tool, dict):
                fixed.append(tool)
                continue
            tool = dict(tool)
            if s.sort_keys:
                if isinstance(tool.get("input_schema"), dict):  # Anthropic
                    tool["input_schema"] = sort_schema(tool["input_schema"], s.sort_properties)
                fn = tool.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("parameters"), dict):  # OpenAI
                    tool["function"] = {**fn, "parameters": sort_schema(fn["parameters"], s.sort_properties)}
            fixed.append(tool)
        if s.sort_tools:
            fixed.sort(key=_tool_name)
        new["tools"] = fixed
    fmt = body.get("response_format")
    if s.sort_keys and isinstance(fmt, dict):
        js = fmt.get("json_schema")
        if isinstance(js, dict) and isinstance(js.get("schema"), dict):
            new["response_format"] = {
                **fmt,
                "json_schema": {**js, "schema": sort_schema(js["schema"], s.sort_properties)},
            }
    return new


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    fn = tool.get("function")
    if isinstance(fn, dict):
        return str(fn.get("name", ""))
    return str(tool.get("name", ""))


# -- Anthropic breakpoints --------------------------------------------------------------------


def count_breakpoints(body: dict[str, Any]) -> int:
    """cache_control markers the client already set."""
    return json.dumps(body, ensure_ascii=False).count('"cache_control"')


def _blocks(content: Any) -> list[dict[str, Any]] | None:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else None
    if isinstance(content, list) and content and all(isinstance(b, dict) for b in content):
        return content
    return None


def _block_tokens(block: dict[str, Any]) -> int:
    if block.get("type") == "text":
        return count_text(str(block.get("text", "")))
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        return count_text(str(source.get("data", "")))
    return count_text(json.dumps(block, ensure_ascii=False))


def add_breakpoints(body: dict[str, Any], s: CanonicalizeSettings) -> tuple[dict[str, Any], list[str]]:
    """A body with cache_control breakpoints on long stable prefixes, and where they went."""
    slots = min(s.max_breakpoints, MAX_BREAKPOINTS) - count_breakpoints(body)
    if slots <= 0:
        return body, []
    marker: dict[str, Any] = {"type": "ephemeral"} if s.ttl == "5m" else {"type": "ephemeral", "ttl": "1h"}
    new = dict(body)
    # Candidates: (priority, position, setter, label); the prefix length decides eligibility.
    candidates: list[tuple[int, int, str, Any]] = []
    prefix = 0
    position = 0
    tools = body.get("tools")
    if isinstance(tools, list) and tools and all(isinstance(t, dict) for t in tools):
        prefix += count_text(json.dumps(tools, ensure_ascii=False))
        position += 1
        if prefix >= s.min_prefix_tokens and "cache_control" not in tools[-1]:
            candidates.append((0, position, "tools", ("tools", len(tools) - 1)))
    system_blocks = _blocks(body.get("system"))
    if system_blocks:
        prefix += sum(_block_tokens(b) for b in system_blocks)
        position += 1
        if prefix >= s.min_prefix_tokens and "cache_control" not in system_blocks[-1]:
            candidates = [c for c in candidates if c[2] != "tools"]  # system covers tools too
            candidates.append((0, position, "system", ("system", len(system_blocks) - 1)))
    raw_messages = body.get("messages")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    last_user = last_user_index(body)
    for mi, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        blocks = _blocks(message.get("content"))
        if not blocks:
            continue
        for bi, block in enumerate(blocks):
            size = _block_tokens(block)
            prefix += size
            position += 1
            is_final = mi == len(messages) - 1 and bi == len(blocks) - 1
            long_doc = block.get("type") in ("text", "document") and size >= s.min_prefix_tokens
            marked = "cache_control" in block
            if (
                s.cache_documents
                and long_doc
                and not is_final
                and not marked
                and prefix >= s.min_prefix_tokens
            ):
                candidates.append((1, position, "document", ("message", mi, bi)))
        if (
            s.cache_history
            and last_user is not None
            and mi == last_user - 1
            and prefix >= s.min_prefix_tokens
            and "cache_control" not in blocks[-1]
        ):
            candidates.append((2, position, "history", ("message", mi, len(blocks) - 1)))
    if not candidates:
        return body, []
    chosen = sorted(candidates, key=lambda c: (c[0], -c[1]))[:slots]
    chosen.sort(key=lambda c: c[1])
    placed: list[str] = []
    new_messages = list(messages)
    for _, _, label, where in chosen:
        if where[0] == "tools":
            tools_list = list(new.get("tools") or [])
            tools_list[where[1]] = {**tools_list[where[1]], "cache_control": marker}
            new["tools"] = tools_list
        elif where[0] == "system":
            blocks = list(_blocks(new.get("system")) or [])
            blocks[where[1]] = {**blocks[where[1]], "cache_control": marker}
            new["system"] = blocks
        else:
            _, mi, bi = where
            message = dict(new_messages[mi])
            blocks = list(_blocks(message.get("content")) or [])
            blocks[bi] = {**blocks[bi], "cache_control": marker}
            message["content"] = blocks
            new_messages[mi] = message
        placed.append(label)
    if new_messages != messages:
        new["messages"] = new_messages
    return new, placed


def is_anthropic_model(ctx: Context) -> bool:
    name = ctx.target_model or ctx.requested_model or str(ctx.body.get("model", ""))
    if name and ctx.config.has_model(name):
        return ctx.config.model(name).provider == "anthropic"
    return name.startswith("claude")


# -- the saving -------------------------------------------------------------------------------


def prompt_cache_saving(ctx: Context, usage: Usage) -> Decimal:
    """What cache reads saved minus what cache writes cost above the input price, at the
    requested model's rates (config override, else the catalog); 0 for an unknown model."""
    name = ctx.requested_model or str(ctx.body.get("model", ""))
    if not name or not ctx.config.has_model(name):
        return Decimal(0)
    rates = pricer.rates(ctx.config.model(name))
    n = usage.total_input_tokens
    base = rates.input.at(n)
    saved = (
        usage.cache_read_tokens * (base - rates.cache_read.at(n))
        - usage.cache_write_tokens * (rates.cache_write.at(n) - base)
        - usage.cache_write_1h_tokens * (rates.cache_write_1h.at(n) - base)
    )
    return saved / MTOK


# -- the stage --------------------------------------------------------------------------------


class CanonicalizeStage(Lever[CanonicalizeSettings]):
    name = "canonicalize"
    Settings = CanonicalizeSettings

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        read_tags(ctx)
        s = self.settings(ctx.traffic)
        body = canonical_body(ctx.body, s)
        placed: list[str] = []
        if s.cache_control and ctx.protocol == "anthropic" and is_anthropic_model(ctx):
            body, placed = add_breakpoints(body, s)
            if placed:
                ctx.extra["cache_breakpoints"] = placed
        # dict equality ignores key order, which is the point here: compare the bytes.
        if placed or json.dumps(body, ensure_ascii=False) != json.dumps(ctx.body, ensure_ascii=False):
            ctx.body = body
        reply = await next(ctx)
        if placed:
            self._track(ctx, reply)
        return reply

    def _track(self, ctx: Context, reply: Reply) -> None:
        def record(usage: Usage) -> None:
            if usage.cache_read_tokens or usage.cache_write_tokens or usage.cache_write_1h_tokens:
                ctx.save("canonicalize", prompt_cache_saving(ctx, usage), usage.cache_read_tokens)

        if reply.stream is not None:

            def on_finish(stream: EventStream) -> None:
                record(stream.usage)

            reply.stream.on_finish(on_finish)
        elif reply.ok:
            record(reply.usage)
