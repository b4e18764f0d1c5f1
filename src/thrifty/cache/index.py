"""The semantic cache's vector index: in-process, partitioned by tenant and namespace.

A partition holds the questions of one tenant under one namespace (the hash of everything
in a request but the question), so a search can only ever return entries that the same
tenant stored for an otherwise identical request. Each partition is a usearch HNSW graph
(cosine, half-precision vectors): at 100,000 entries a search takes well under a
millisecond, where a numpy brute-force product over the same matrix costs 8-15 ms here,
more than the whole lookup budget. Entries expire after their TTL (filtered at search,
swept on writes), and the oldest entries of a partition give way when it is full.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from usearch.index import Index

Clock = Callable[[], float]


@dataclass
class Entry:
    """One cached question and what to answer it with."""

    key: int
    tenant: str
    namespace: str
    question: str
    vector: np.ndarray
    payload: dict[str, Any]
    created: float
    expires: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass
class Hit:
    entry: Entry
    score: float


class SemanticIndex(Protocol):
    """What the semantic cache needs of a vector index: `InProcessIndex` (one process) and
    `thrifty.cache.pgvector_index.PgVectorIndex` (shared by replicas) both provide it.
    Methods block; callers run them in worker threads."""

    dim: int

    def __len__(self) -> int: ...

    def has(self, tenant: str, namespace: str) -> bool: ...

    def add(self, tenant: str, namespace: str, question: str, vector: np.ndarray, payload: dict[str, Any],
            ttl: float | None = None) -> Entry: ...

    def search(self, tenant: str, namespace: str, vector: np.ndarray, k: int = 5, min_score: float = 0.0) -> list[Hit]: ...

    def delete(self, tenant: str, namespace: str | None = None, key: int | None = None) -> int: ...

    def clear(self) -> int: ...

    def sweep(self) -> int: ...


#: Partitions up to this many nodes are searched exactly instead of through the HNSW graph.
EXACT_UP_TO = 4096


def _graph(dim: int) -> Index:
    return Index(ndim=dim, metric="cos", dtype="f16", connectivity=16, expansion_add=128, expansion_search=128)


@dataclass
class _Partition:
    dim: int
    graph: Index = field(init=False)
    entries: OrderedDict[int, Entry] = field(default_factory=OrderedDict)
    #: Removed nodes stay in an HNSW graph as tombstones; past a point the graph is rebuilt.
    removed: int = 0

    def __post_init__(self) -> None:
        self.graph = _graph(self.dim)

    def rebuild_if_worn(self) -> None:
        if self.removed <= max(256, len(self.entries)):
            return
        self.graph = _graph(self.dim)
        if self.entries:
            keys = np.fromiter(self.entries, dtype=np.uint64, count=len(self.entries))
            self.graph.add(keys, np.stack([e.vector for e in self.entries.values()]))
        self.removed = 0


class InProcessIndex:
    """Vectors by (tenant, namespace), with TTL, delete and a per-partition size cap.

    Thread-safe: the semantic cache searches and adds from worker threads.
    """

    def __init__(self, dim: int = 384, max_entries: int = 100_000, clock: Clock = time.time) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self.clock = clock
        self._parts: dict[tuple[str, str], _Partition] = {}
        self._keys = itertools.count(1)
        self._lock = threading.Lock()
        self._writes = 0

    def __len__(self) -> int:
        return sum(len(p.entries) for p in self._parts.values())

    def has(self, tenant: str, namespace: str) -> bool:
        """Whether the tenant has any entry under the namespace (a lookup is worth its embedding)."""
        part = self._parts.get((tenant, namespace))
        return part is not None and bool(part.entries)

    def add(
        self,
        tenant: str,
        namespace: str,
        question: str,
        vector: np.ndarray,
        payload: dict[str, Any],
        ttl: float | None = None,
    ) -> Entry:
        """Store `payload` for `question`; it is found by similar vectors until `ttl` seconds pass."""
        now = self.clock()
        vec = np.asarray(vector, dtype=np.float32).reshape(self.dim)
        with self._lock:
            part = self._parts.get((tenant, namespace))
            if part is None:
                part = self._parts[(tenant, namespace)] = _Partition(self.dim)
            entry = Entry(next(self._keys), tenant, namespace, question, vec, payload, now, None if ttl is None else now + ttl)
            part.graph.add(entry.key, vec)
            part.entries[entry.key] = entry
            while len(part.entries) > self.max_entries:
                self._remove_locked(part, next(iter(part.entries)))
            self._writes += 1
            if self._writes % 1024 == 0:
                self._sweep_locked(now)
        return entry

    def add_many(
        self,
        tenant: str,
        namespace: str,
        questions: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        ttl: float | None = None,
        threads: int = 0,
    ) -> None:
        """Bulk insert (a warm start, a benchmark): one graph call for all vectors."""
        now = self.clock()
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(questions), self.dim)
        with self._lock:
            part = self._parts.get((tenant, namespace))
            if part is None:
                part = self._parts[(tenant, namespace)] = _Partition(self.dim)
            keys = np.array([next(self._keys) for _ in questions], dtype=np.uint64)
            part.graph.add(keys, vecs, threads=threads)
            for k, q, v, p in zip(keys, questions, vecs, payloads, strict=True):
                e = Entry(int(k), tenant, namespace, q, v, p, now, None if ttl is None else now + ttl)
                part.entries[e.key] = e
            while len(part.entries) > self.max_entries:
                self._remove_locked(part, next(iter(part.entries)))

    def search(self, tenant: str, namespace: str, vector: np.ndarray, k: int = 5, min_score: float = 0.0) -> list[Hit]:
        """The `k` most similar live entries of this tenant and namespace, best first."""
        now = self.clock()
        with self._lock:
            part = self._parts.get((tenant, namespace))
            if part is None or not part.entries:
                return []
            query = np.asarray(vector, dtype=np.float32).reshape(self.dim)
            # Removed entries stay in the graph as tombstones (they are skipped here); ask for
            # more neighbours until k live ones are found or the whole graph has been seen.
            want = min(len(part.graph), k + 8)
            while True:
                # Small partitions are searched exhaustively: exact, and still well under a millisecond.
                matches = part.graph.search(query, want, exact=len(part.graph) <= EXACT_UP_TO)
                hits: list[Hit] = []
                stale: list[int] = []
                live = 0
                for key, distance in zip(matches.keys, matches.distances, strict=True):
                    entry = part.entries.get(int(key))
                    if entry is None:
                        continue
                    if entry.expired(now):
                        stale.append(entry.key)
                        continue
                    live += 1
                    score = 1.0 - float(distance)
                    if score >= min_score:
                        hits.append(Hit(entry, score))
                if live >= k or want >= len(part.graph):
                    break
                want = min(len(part.graph), want * 4)
            for key in stale:
                self._remove_locked(part, key)
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def delete(self, tenant: str, namespace: str | None = None, key: int | None = None) -> int:
        """Remove one entry (`key`), a namespace, or everything of `tenant`; returns how many."""
        removed = 0
        with self._lock:
            for (t, ns), part in list(self._parts.items()):
                if t != tenant or (namespace is not None and ns != namespace):
                    continue
                if key is not None:
                    if key in part.entries:
                        self._remove_locked(part, key)
                        removed += 1
                    continue
                removed += len(part.entries)
                del self._parts[(t, ns)]
        return removed

    def clear(self) -> int:
        with self._lock:
            n = sum(len(p.entries) for p in self._parts.values())
            self._parts.clear()
        return n

    def sweep(self) -> int:
        """Drop every expired entry now; returns how many."""
        with self._lock:
            return self._sweep_locked(self.clock())

    def _sweep_locked(self, now: float) -> int:
        n = 0
        for key_, part in list(self._parts.items()):
            for entry in [e for e in part.entries.values() if e.expired(now)]:
                self._remove_locked(part, entry.key)
                n += 1
            if not part.entries:
                del self._parts[key_]
        return n

    @staticmethod
    def _remove_locked(part: _Partition, key: int) -> None:
        # No `graph.remove`: usearch's removal can spin forever on a churned graph. The node
        # stays as a tombstone that search skips, until the partition is rebuilt.
        if part.entries.pop(key, None) is not None:
            part.removed += 1
        part.rebuild_if_worn()
