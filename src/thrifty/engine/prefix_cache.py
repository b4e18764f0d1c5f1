"""Finished sequences kept in the KV cache so later prompts that start the same skip prefill.

Each entry is one sequence id whose KV holds `tokens`. A new request takes the entry with
the longest common prefix and copies that range to its own sequence (with a unified KV
cache the copy only tags the same cells). Entries are evicted least recently used first,
within a slot count and a token budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass
class Entry:
    seq_id: int
    tokens: np.ndarray


class PrefixCache:
    def __init__(self, slots: int, token_budget: int = 0) -> None:
        self.slots = slots
        self.token_budget = token_budget
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # seq_id -> entry, oldest first
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        return sum(len(e.tokens) for e in self._entries.values())

    def lookup(self, prompt: list[int], min_tokens: int) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with `prompt` (at least `min_tokens`), and its length."""
        if not self._entries or not prompt:
            self.misses += 1
            return None, 0
        want = np.asarray(prompt, dtype=np.int32)
        best: Entry | None = None
        best_n = 0
        for entry in self._entries.values():
            n = min(len(want), len(entry.tokens))
            if n <= best_n:
                continue
            diff = np.flatnonzero(want[:n] != entry.tokens[:n])
            common = int(diff[0]) if diff.size else n
            if common > best_n:
                best, best_n = entry, common
        if best is None or best_n < min_tokens:
            self.misses += 1
            return None, 0
        self._entries.move_to_end(best.seq_id)
        self.hits += 1
        return best, best_n

    def add(self, seq_id: int, tokens: list[int]) -> list[int]:
        """Keep `seq_id`'s KV under `tokens`; returns the sequence ids to free (made redundant or evicted)."""
        arr = np.asarray(tokens, dtype=np.int32)
        freed = [
            sid
            for sid, e in self._entries.items()
            if len(e.tokens) <= len(arr) and np.array_equal(e.tokens, arr[: len(e.tokens)])
        ]
        for sid in freed:
            del self._entries[sid]
        self._entries[seq_id] = Entry(seq_id, arr)
        while self._entries and (
            len(self._entries) > self.slots or (self.token_budget and self.tokens > self.token_budget)
        ):
            freed.append(self.pop_lru())
        return freed

    def pop_lru(self) -> int:
        sid, _ = self._entries.popitem(last=False)
        return sid

    def clear(self) -> list[int]:
        sids = list(self._entries)
        self._entries.clear()
        return sids
