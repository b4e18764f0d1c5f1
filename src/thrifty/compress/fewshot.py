"""Few-shot selection: of a route's example pool, send only the k closest to the query.

A route declares `pool` (pairs of `input` and `output`). Examples from the pool that the
client sent as user/assistant message pairs before its question are pruned to the `k` most
similar to the last user message (cosine of all-MiniLM-L6-v2 embeddings); the tokens of the
dropped pairs are the saving. With `inject: true`, a request that carries none of the pool's
examples gets the k closest inserted after the system prompt (no saving is claimed: the
client never paid for the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.extract import Embedder
from thrifty.compress.messages import SYSTEM_ROLES, message_text


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str
    output: str


class FewshotSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    k: int = Field(default=3, ge=0)
    pool: list[Example] = Field(default_factory=list)
    inject: bool = False


def _norm(text: str) -> str:
    return " ".join(text.split())


def find_examples(
    messages: Sequence[dict[str, Any]], pool: Sequence[Example], stop: int
) -> list[tuple[int, int]]:
    """(message index, pool index) of each pool example sent as a user/assistant pair before `stop`."""
    by_input: dict[str, list[int]] = {}
    for j, ex in enumerate(pool):
        by_input.setdefault(_norm(ex.input), []).append(j)
    found: list[tuple[int, int]] = []
    i = 0
    while i + 1 < stop:
        user, assistant = messages[i], messages[i + 1]
        if user.get("role") == "user" and assistant.get("role") == "assistant":
            for j in by_input.get(_norm(message_text(user)), []):
                if _norm(message_text(assistant)) == _norm(pool[j].output):
                    found.append((i, j))
                    i += 1
                    break
        i += 1
    return found


def rank(query: str, pool: Sequence[Example], candidates: Sequence[int], embedder: Embedder) -> list[int]:
    """`candidates` (pool indices) from the most to the least similar to `query`."""
    if not candidates:
        return []
    vecs = embedder.embed([query, *(pool[j].input for j in candidates)])
    sims = vecs[1:] @ vecs[0]
    order = np.argsort(-sims, kind="stable")
    return [candidates[int(o)] for o in order]


def prune(
    messages: list[dict[str, Any]], question_index: int, settings: FewshotSettings, embedder: Embedder
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """New message list keeping the k best pool examples, and the removed messages; None if nothing to do."""
    query = message_text(messages[question_index])
    found = find_examples(messages, settings.pool, question_index)
    if found:
        if len(found) <= settings.k:
            return None
        keep = set(rank(query, settings.pool, [j for _, j in found], embedder)[: settings.k])
        drop: set[int] = set()
        for i, j in found:
            if j not in keep:
                drop.update((i, i + 1))
        kept = [m for i, m in enumerate(messages) if i not in drop]
        removed = [m for i, m in enumerate(messages) if i in drop]
        return kept, removed
    if settings.inject and settings.pool and settings.k:
        best = rank(query, settings.pool, list(range(len(settings.pool))), embedder)[: settings.k]
        at = 0
        while at < len(messages) and messages[at].get("role") in SYSTEM_ROLES:
            at += 1
        shots: list[dict[str, Any]] = []
        # Most similar last, nearest to the question.
        for j in reversed(best):
            shots.append({"role": "user", "content": settings.pool[j].input})
            shots.append({"role": "assistant", "content": settings.pool[j].output})
        return [*messages[:at], *shots, *messages[at:]], []
    return None
