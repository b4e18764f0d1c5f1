"""Fixed-size summaries that let the audit stream a log of any length in bounded memory.

- `Bloom`: "seen this request before?" for exact duplicates, in a fixed bit array;
- `Groups`: sums per group (model, route, key, day, ...), at most `cap` groups, the rest
  pooled under "(other)";
- `TopK`: the heaviest items by weight (Space-Saving), for the costliest repeated prompts;
- `LogHistogram`: counts and sums in log-spaced buckets, for latency percentiles and
  output-length outliers;
- `Reservoir`: a uniform sample of fixed size, for the near-duplicate search.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

OTHER = "(other)"


class Bloom:
    """A Bloom filter over 16-byte digests: `add` says whether the item was (probably) seen.

    False positives (a new item reported as seen) happen at about `fp_rate` once `capacity`
    items are in; there are no false negatives. Memory: about 1.2 bytes per capacity item at 1%.
    """

    def __init__(self, capacity: int = 2_000_000, fp_rate: float = 0.001) -> None:
        bits = max(1024, int(-capacity * math.log(fp_rate) / (math.log(2) ** 2)))
        self.bits = bits
        self.k = max(1, round(bits / capacity * math.log(2)))
        self.capacity = capacity
        self.fp_rate = fp_rate
        self._array = bytearray((bits + 7) // 8)
        self.count = 0

    def add(self, digest: bytes) -> bool:
        """Insert `digest` (at least 16 bytes); True if it was already (probably) present."""
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:16], "little") | 1
        seen = True
        arr, bits = self._array, self.bits
        for _ in range(self.k):
            bit = h1 % bits
            h1 += h2
            mask = 1 << (bit & 7)
            byte = bit >> 3
            if not arr[byte] & mask:
                seen = False
                arr[byte] |= mask
        if not seen:
            self.count += 1
        return seen

    @property
    def nbytes(self) -> int:
        return len(self._array)


@dataclass
class Agg:
    requests: int = 0
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0


class Groups:
    """Aggregates per group key; groups beyond `cap` are pooled under "(other)"."""

    def __init__(self, cap: int = 500) -> None:
        self.cap = cap
        self.data: dict[str, Agg] = {}

    def add(self, key: str, cost: float, input_tokens: int, output_tokens: int, error: bool) -> None:
        agg = self.data.get(key)
        if agg is None:
            if len(self.data) >= self.cap:
                key = OTHER
                agg = self.data.get(key)
            if agg is None:
                agg = self.data[key] = Agg()
        agg.requests += 1
        agg.cost += cost
        agg.input_tokens += input_tokens
        agg.output_tokens += output_tokens
        agg.errors += error

    def top(self, n: int | None = None) -> list[tuple[str, Agg]]:
        items = sorted(self.data.items(), key=lambda kv: kv[1].cost, reverse=True)
        return items if n is None else items[:n]


@dataclass
class TopItem:
    weight: float = 0.0
    count: int = 0
    #: Space-Saving's overestimate bound: the weight it may have inherited on entry.
    error: float = 0.0
    label: str = ""


class TopK:
    """Heaviest items by summed weight, in at most `k` entries.

    Exact while fewer than `k` distinct items arrive. When full, the lighter half is dropped
    at once and later newcomers start from the heaviest dropped weight (`floor`, recorded as
    their possible overestimate), the batched form of Space-Saving: amortised O(1) per item.
    """

    def __init__(self, k: int = 500) -> None:
        self.k = k
        self.items: dict[bytes, TopItem] = {}
        self.floor = 0.0

    def add(self, item: bytes, weight: float, label: str = "") -> None:
        entry = self.items.get(item)
        if entry is None:
            if len(self.items) >= self.k:
                ranked = sorted(self.items.items(), key=lambda kv: kv[1].weight, reverse=True)
                keep = ranked[: self.k // 2]
                self.floor = max(self.floor, ranked[len(keep)][1].weight)
                self.items = dict(keep)
            entry = self.items[item] = TopItem(weight=self.floor, error=self.floor, label=label)
        entry.weight += weight
        entry.count += 1

    def top(self, n: int) -> list[TopItem]:
        return sorted(self.items.values(), key=lambda e: e.weight, reverse=True)[:n]


class LogHistogram:
    """Counts, value sums and a side quantity (e.g. cost) in buckets `per_octave` to a doubling."""

    def __init__(self, per_octave: int = 8, max_octaves: int = 40) -> None:
        self.per_octave = per_octave
        n = per_octave * max_octaves + 1
        self.counts = [0] * n
        self.sums = [0.0] * n
        self.side = [0.0] * n
        self.total = 0

    def bucket(self, value: float) -> int:
        if value < 1:
            return 0
        return min(len(self.counts) - 1, 1 + int(math.log2(value) * self.per_octave))

    def upper(self, b: int) -> float:
        return 1.0 if b == 0 else 2 ** (b / self.per_octave)

    def add(self, value: float, side: float = 0.0) -> None:
        b = self.bucket(value)
        self.counts[b] += 1
        self.sums[b] += value
        self.side[b] += side
        self.total += 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile, as its bucket's mean (error under 1/per_octave of a doubling)."""
        if self.total == 0:
            return None
        target = q * self.total
        cum = np.cumsum(self.counts)
        b = int(np.searchsorted(cum, target, side="left"))
        b = min(b, len(self.counts) - 1)
        return float(self.sums[b] / self.counts[b]) if self.counts[b] else self.upper(b)

    def above(self, threshold: float) -> tuple[int, float, float]:
        """(count, value sum, side sum) of the buckets that lie wholly above `threshold`."""
        start = self.bucket(threshold) + 1
        return sum(self.counts[start:]), float(sum(self.sums[start:])), float(sum(self.side[start:]))


@dataclass
class Reservoir(Generic[T]):
    """A uniform sample of at most `size` items from a stream (Algorithm R), seeded."""

    size: int
    seed: int = 0
    items: list[T] = field(default_factory=list)
    seen: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(self, item: T) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            j = self._rng.randrange(self.seen)
            if j < self.size:
                self.items[j] = item
