"""History budget: long conversations keep the system prompt and the last turns verbatim;
older turns become one summary written by a cheap model.

A turn starts at a user message (tool results belong to the turn that called the tool, so
a tool call is never separated from its result). Once the conversation passes
`budget_tokens`, the turns before the last `keep_turns` are summarised. The cut moves in
steps of `every` turns so that one summary serves several requests in a row (and the
provider's prefix cache sees the same prefix); each summary is made once per conversation
prefix and kept in an in-memory LRU and, optionally, SQLite. A summary of a longer prefix
is built from the previous step's summary plus the new turns, so its cost stays small.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.messages import SYSTEM_ROLES, is_tool_result, message_tokens_text
from thrifty.ledger.tokens import count_text
from thrifty.migrations import Migration
from thrifty.sqldb import SQLDatabase
from thrifty.types import Wire
from thrifty.urls import store_url

DEFAULT_INSTRUCTION = (
    "Summarise the conversation below for the assistant who will continue it. Keep every fact, "
    "decision, name, number, constraint and open question; drop pleasantries. Write plain prose, "
    "at most {max_tokens} tokens."
)
SUMMARY_PREFIX = "Summary of the earlier conversation:\n"


class HistorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: Configured model that writes the summaries (a cheap one).
    model: str | None = None
    keep_turns: int = Field(default=4, ge=1)
    #: Summarise only when the conversation (system prompt excluded) is over this many tokens.
    budget_tokens: int = Field(default=3000, ge=0)
    #: Move the cut in steps of this many turns (default: keep_turns).
    every: int | None = Field(default=None, ge=1)
    summary_max_tokens: int = Field(default=400, ge=16)
    instruction: str = DEFAULT_INSTRUCTION
    cache_size: int = Field(default=2048, ge=1)
    #: Where summaries outlive a restart (optional): a SQLite file, or a store URL
    #: (postgresql://... shares them between replicas).
    store: str | None = None


Summarizer = Callable[[str, dict[str, Any]], Awaitable[str | None]]
"""(model, request body in the client's protocol) -> summary text, or None on failure."""


#: The summary table's schema history (see `thrifty.migrations`).
SUMMARY_MIGRATIONS = (
    Migration("history_summaries_0001_initial", lambda dialect: [
        "CREATE TABLE IF NOT EXISTS history_summaries (key TEXT PRIMARY KEY, summary TEXT NOT NULL, ts "
        + ("REAL" if dialect == "sqlite" else "DOUBLE PRECISION") + " NOT NULL)"
    ]),
)


class SummaryCache:
    """Summaries by conversation-prefix key: an LRU in memory over an optional table in a
    SQLite file or a store URL (SQLite or PostgreSQL, which replicas share)."""

    def __init__(self, size: int, path: str | None = None) -> None:
        self._lru: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._db: SQLDatabase | None = None
        if path:
            self._db = SQLDatabase(store_url(path), "history_summaries", SUMMARY_MIGRATIONS)

    def _remember(self, key: str, summary: str) -> None:
        self._lru[key] = summary
        self._lru.move_to_end(key)
        while len(self._lru) > self._size:
            self._lru.popitem(last=False)

    def get_memory(self, key: str) -> str | None:
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
        return hit

    def get_disk(self, key: str) -> str | None:
        if self._db is None:
            return None
        rows = self._db.run("SELECT summary FROM history_summaries WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def get(self, key: str) -> str | None:
        hit = self.get_memory(key)
        if hit is None and self._db is not None:
            hit = await asyncio.to_thread(self.get_disk, key)
            if hit is not None:
                self._remember(key, hit)
        return hit

    def _put_disk(self, key: str, summary: str) -> None:
        assert self._db is not None
        self._db.run(
            "INSERT INTO history_summaries (key, summary, ts) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "summary = excluded.summary, ts = excluded.ts",
            (key, summary, time.time()),
        )

    async def put(self, key: str, summary: str) -> None:
        self._remember(key, summary)
        if self._db is not None:
            await asyncio.to_thread(self._put_disk, key, summary)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def turn_starts(messages: list[dict[str, Any]], first: int) -> list[int]:
    """Indices (from `first`) where a turn starts: a user message that is not only tool results."""
    return [
        i
        for i in range(first, len(messages))
        if messages[i].get("role") == "user" and not is_tool_result(messages[i])
    ]


def transcript(messages: list[dict[str, Any]]) -> str:
    lines = []
    for m in messages:
        role = "Tool" if is_tool_result(m) else str(m.get("role", "user")).capitalize()
        lines.append(f"{role}: {message_tokens_text(m)}")
    return "\n\n".join(lines)


def prefix_key(model: str, instruction: str, messages: list[dict[str, Any]]) -> str:
    blob = json.dumps(
        [model, instruction, messages], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def summary_request(
    protocol: Wire, model: str, instruction: str, text: str, max_tokens: int
) -> dict[str, Any]:
    if protocol == "anthropic":
        return {
            "model": model,
            "max_tokens": max_tokens,
            "system": instruction,
            "messages": [{"role": "user", "content": text}],
        }
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "system", "content": instruction}, {"role": "user", "content": text}],
    }




class HistoryBudget:
    """Rewrites long conversations; one per stage, shared by every route that enables it."""

    def __init__(self, cache: SummaryCache) -> None:
        self.cache = cache
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    async def summary_for(
        self,
        protocol: Wire,
        messages: list[dict[str, Any]],
        first: int,
        cuts: list[int],
        settings: HistorySettings,
        summarize: Summarizer,
    ) -> str | None:
        """The summary of messages[first:cuts[-1]], built on the summary at cuts[-2] if cached."""
        assert settings.model is not None
        cut = cuts[-1]
        key = prefix_key(settings.model, settings.instruction, messages[:cut])
        hit = await self.cache.get(key)
        if hit is not None:
            return hit
        pending = self._inflight.get(key)
        if pending is not None:
            return await pending
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            start = first
            previous: str | None = None
            if len(cuts) > 1:
                previous = await self.cache.get(
                    prefix_key(settings.model, settings.instruction, messages[: cuts[-2]])
                )
                if previous is not None:
                    start = cuts[-2]
            text = transcript(messages[start:cut])
            if previous is not None:
                text = f"Summary so far:\n{previous}\n\nThe conversation continued:\n\n{text}"
            instruction = settings.instruction.format(max_tokens=settings.summary_max_tokens)
            body = summary_request(protocol, settings.model, instruction, text, settings.summary_max_tokens)
            summary = await summarize(settings.model, body)
            if summary:
                await self.cache.put(key, summary)
            future.set_result(summary)
            return summary
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters see it, nobody else must
            raise
        finally:
            del self._inflight[key]

    async def apply(
        self, protocol: Wire, body: dict[str, Any], settings: HistorySettings, summarize: Summarizer
    ) -> tuple[dict[str, Any], int, str] | None:
        """A rewritten body, the tokens it saves and a note; None when the history is left as is."""
        if settings.model is None:
            return None
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return None
        first = 0
        if protocol == "openai":
            while first < len(messages) and messages[first].get("role") in SYSTEM_ROLES:
                first += 1
        starts = turn_starts(messages, first)
        every = settings.every or settings.keep_turns
        old_turns = len(starts) - settings.keep_turns
        old_turns -= old_turns % every
        if old_turns <= 0:
            return None
        history_tokens = sum(count_text(message_tokens_text(m)) for m in messages[first:])
        if history_tokens <= settings.budget_tokens:
            return None
        # Cut points every `every` turns up to the chosen one; the first turn may be preceded
        # by assistant messages (a greeting), which belong to the summarised part.
        cuts = [starts[n] for n in range(every, old_turns + 1, every)]
        summary = await self.summary_for(protocol, messages, first, cuts, settings, summarize)
        if not summary:
            return None
        cut = cuts[-1]
        removed_tokens = sum(count_text(message_tokens_text(m)) for m in messages[first:cut])
        saved = removed_tokens - count_text(SUMMARY_PREFIX + summary)
        if saved <= 0:
            return None
        new = dict(body)
        if protocol == "anthropic":
            new["messages"] = messages[cut:]
            new["system"] = _append_system(body.get("system"), SUMMARY_PREFIX + summary)
        else:
            note = {"role": "system", "content": SUMMARY_PREFIX + summary}
            new["messages"] = [*messages[:first], note, *messages[cut:]]
        return new, saved, f"history: {len(starts[:old_turns])} turns ({removed_tokens} tokens) summarised"


def _append_system(system: Any, text: str) -> Any:
    if system is None or system == "":
        return text
    if isinstance(system, str):
        return system + "\n\n" + text
    if isinstance(system, list):
        return [*system, {"type": "text", "text": text}]
    return system
