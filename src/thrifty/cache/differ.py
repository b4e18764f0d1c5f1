"""What two prompts that share a template actually ask: the part where they differ.

Real prompts often carry the same block before (or after) their own question: few-shot
examples, a long instruction template, an inlined policy. Compared whole, two different
questions behind the same five solved examples look alike (their embeddings are dominated by
the shared block, and MiniLM reads only the first 256 tokens), so a semantic cache -- or an
audit that estimates one -- would take them for the same question. What decides whether two
such prompts ask the same thing is the part where they differ.

`differing(a, b)` drops the segments (lines, and sentences within lines) the two texts share
at their start and at their end, and returns what is left of each. `verify_pairs` runs the
verifier on those parts; the semantic cache and `thrifty audit` both decide through it, so
the audit's near-duplicate estimate is what the cache would serve. `shared_segments` finds
the segments many prompts of one group carry, which the audit strips before it embeds them
to find candidates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from thrifty.cache.verifier import Verdict, Verifier

__all__ = ["differing", "segments", "shared_segments", "strip_segments", "verify_pairs"]

#: A segment ends at a line break, or after a sentence end followed by space.
_SPLIT = re.compile(r"\n+|(?<=[.!?])[ \t]+(?=\S)")


def segments(text: str) -> list[str]:
    """The text's lines and sentences, stripped, empty ones left out."""
    return [s for s in (p.strip() for p in _SPLIT.split(text)) if s]


def differing(a: str, b: str) -> tuple[str, str]:
    """`a` and `b` without the segments they share at their start and at their end.

    Two texts with no shared leading or trailing segment come back unchanged (but for outer
    whitespace); identical texts come back as two empty strings.
    """
    sa, sb = segments(a), segments(b)
    n = min(len(sa), len(sb))
    head = 0
    while head < n and sa[head] == sb[head]:
        head += 1
    tail = 0
    while tail < n - head and sa[len(sa) - 1 - tail] == sb[len(sb) - 1 - tail]:
        tail += 1
    if head == 0 and tail == 0:
        return a.strip(), b.strip()
    return " ".join(sa[head : len(sa) - tail]), " ".join(sb[head : len(sb) - tail])


def shared_segments(texts: Iterable[str], min_prompts: int = 2) -> set[str]:
    """Segments that occur in at least `min_prompts` of `texts` (each text counted once)."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(set(segments(t)))
    return {s for s, c in counts.items() if c >= min_prompts}


def strip_segments(text: str, shared: set[str]) -> str:
    """`text` without the `shared` segments; the text itself when nothing else is left."""
    kept = [s for s in segments(text) if s not in shared]
    return " ".join(kept) if kept else text.strip()


def verify_pairs(
    verifier: Verifier,
    embed: Callable[[list[str]], np.ndarray],
    stored: Sequence[tuple[str, np.ndarray | None]],
    asked: Sequence[tuple[str, np.ndarray | None]],
    threshold: float | None = None,
) -> tuple[list[Verdict], list[tuple[str, str]]]:
    """Verdicts on pairs (stored[i], asked[i]), each decided on the part where the two differ.

    Each side is a text with its embedding (or None). Where the shared segments leave a
    side unchanged its embedding is reused; otherwise the differing parts are embedded (one
    batch). A pair where one side has nothing left that the other lacks (one text is the
    other plus more) is refused. Returns the verdicts and the parts that were compared.
    """
    parts = [differing(s[0], q[0]) for s, q in zip(stored, asked, strict=True)]
    def reuse(part: str, side: tuple[str, np.ndarray | None]) -> bool:
        return side[1] is not None and part == side[0].strip()

    need: dict[str, int] = {}
    for (pa, pb), s, q in zip(parts, stored, asked, strict=True):
        for part, sd in ((pa, s), (pb, q)):
            if part and not reuse(part, sd):
                need.setdefault(part, len(need))
    fresh = embed(list(need)) if need else None
    verdicts: list[Verdict | None] = [None] * len(parts)
    rows: list[int] = []
    ta: list[str] = []
    tb: list[str] = []
    ea: list[np.ndarray] = []
    eb: list[np.ndarray] = []
    for i, ((pa, pb), s, q) in enumerate(zip(parts, stored, asked, strict=True)):
        if not pa and not pb:
            verdicts[i] = Verdict(True, 1.0, "same text")
            continue
        if not pa or not pb:
            verdicts[i] = Verdict(False, 0.0, "one side only adds text")
            continue
        rows.append(i)
        ta.append(pa)
        tb.append(pb)
        ea.append(s[1] if reuse(pa, s) else fresh[need[pa]])  # type: ignore[index,arg-type]
        eb.append(q[1] if reuse(pb, q) else fresh[need[pb]])  # type: ignore[index,arg-type]
    if rows:
        decided = verifier.decide(ta, tb, np.stack(ea), np.stack(eb), threshold)
        for i, v in zip(rows, decided, strict=True):
            verdicts[i] = v
    return [v for v in verdicts if v is not None], parts
