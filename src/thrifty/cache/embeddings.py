"""A per-input exact cache of embedding vectors.

An embeddings request is a batch, and batches overlap: a RAG indexer re-embeds a corpus of
which most chunks did not change. Caching the batch as a whole would miss on every changed
chunk, so each input is cached on its own, keyed by the tenant and the model (the caller's
scope), the requested dimensions and the exact input. A request then sends upstream only the inputs not seen before, and
the answer puts every vector back in its input's position (`plan` and `assemble` do this,
and are what the property test exercises).

Vectors are kept as float64 bytes, so a cached vector is bit-for-bit the one the upstream
sent. An in-process LRU sits in front of a table in thrifty's store (SQLite or
PostgreSQL), so replicas share what any of them has paid for.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from thrifty.migrations import Dialect, Migration
from thrifty.sqldb import SQLDatabase

__all__ = ["MIGRATIONS", "CachedVector", "EmbeddingCache", "assemble", "input_key", "plan"]

TABLE = "thrifty_embedding_cache"


def _create(dialect: Dialect) -> list[str]:
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return [f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, vector {blob} NOT NULL, "
            f"tokens INTEGER NOT NULL, created_at {real} NOT NULL)"]


MIGRATIONS = [Migration("embedding_cache_0001_create", _create)]


@dataclass(frozen=True)
class CachedVector:
    vector: list[float]
    #: The input's tokens as billed when it was embedded (what a hit saves).
    tokens: int


def input_key(model: str, dimensions: int | None, item: str | list[int]) -> str:
    """The cache key of one input in `model`'s scope (the tenant, the configured name and its upstream id)."""
    raw = orjson.dumps([model, dimensions, item])
    return hashlib.sha256(raw).hexdigest()


def plan(keys: Sequence[str], cached: dict[str, Any]) -> list[int]:
    """Positions of the inputs to send upstream: those not cached, each distinct key once
    (a batch that repeats an input pays for it once)."""
    seen: set[str] = set()
    todo: list[int] = []
    for i, key in enumerate(keys):
        if key not in cached and key not in seen:
            seen.add(key)
            todo.append(i)
    return todo


def assemble(keys: Sequence[str], cached: dict[str, Any], todo: Sequence[int], fresh: Sequence[Any]) -> list[Any]:
    """Every input's vector in its own position: `fresh[j]` is the upstream's answer for
    input `todo[j]`; the others come from `cached` (or a repeat earlier in the batch)."""
    found = dict(cached)
    for position, vector in zip(todo, fresh, strict=True):
        found[keys[position]] = vector
    return [found[key] for key in keys]


def _pack(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype=np.float64).tobytes()


def _unpack(raw: bytes | memoryview) -> list[float]:
    return [float(x) for x in np.frombuffer(bytes(raw), dtype=np.float64)]


class EmbeddingCache:
    """Vectors by input key: an LRU of `memory_entries` in front of the store's table."""

    def __init__(self, db: SQLDatabase | None, memory_entries: int = 20_000) -> None:
        self.db = db
        self._memory: OrderedDict[str, CachedVector] = OrderedDict()
        self._limit = memory_entries

    def _remember(self, key: str, value: CachedVector) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self._limit:
            self._memory.popitem(last=False)

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedVector]:
        found: dict[str, CachedVector] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                found[key] = hit
            else:
                missing.append(key)
        if self.db is not None:
            for start in range(0, len(missing), 500):
                part = missing[start:start + 500]
                marks = ", ".join("?" * len(part))
                for key, raw, tokens in self.db.run(
                        f"SELECT key, vector, tokens FROM {TABLE} WHERE key IN ({marks})", part):
                    value = CachedVector(_unpack(raw), int(tokens))
                    found[key] = value
                    self._remember(key, value)
        return found

    def put_many(self, values: dict[str, CachedVector]) -> None:
        for key, value in values.items():
            self._remember(key, value)
        if self.db is None or not values:
            return
        verb = "INSERT OR REPLACE INTO" if self.db.dialect == "sqlite" else "INSERT INTO"
        tail = "" if self.db.dialect == "sqlite" else " ON CONFLICT (key) DO NOTHING"
        now = time.time()
        for key, value in values.items():
            self.db.run(f"{verb} {TABLE} (key, vector, tokens, created_at) VALUES (?, ?, ?, ?){tail}",
                        (key, _pack(value.vector), value.tokens, now))

    async def aget_many(self, keys: Sequence[str]) -> dict[str, CachedVector]:
        return await asyncio.to_thread(self.get_many, keys)

    async def aput_many(self, values: dict[str, CachedVector]) -> None:
        await asyncio.to_thread(self.put_many, values)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
