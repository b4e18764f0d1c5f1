"""Near-duplicates as the semantic cache would decide them, on a sample of a log's prompts.

A near-duplicate is worth reporting only if the semantic cache would serve it. So the
audit asks the same questions the cache asks: the question is what
`thrifty.cache.semantic.extract_question` finds (the last user message; the system prompt,
earlier turns, model and parameters form its namespace, and only questions of one namespace
are compared), candidates are the `top_k` closest earlier questions at cosine >= `min_cosine`
(the cache's defaults), and a candidate counts only when the shipped verifier accepts it,
judged on the part where the two questions differ (`thrifty.cache.differ.verify_pairs`, the
cache's own decision).

Before embedding, the segments (lines, sentences) that at least two prompts of a namespace
share are set aside, so that a block of few-shot examples or a long instruction template in
front of every question does not make every question the nearest neighbour of every other:
MiniLM reads only the first 256 tokens, which would be the shared block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty.cache.differ import shared_segments, strip_segments, verify_pairs
from thrifty.cache.verifier import Verdict, Verifier

__all__ = ["QuestionSample", "near_duplicates"]

#: Characters of each side shown in the report's examples.
EXAMPLE_CHARS = 200


@dataclass
class QuestionSample:
    """One distinct question kept in the audit's uniform sample."""

    text: str
    cost: float
    #: Digest of the namespace (everything in the request but the question).
    group: bytes
    #: Digest of the whole question (the text may be cut to its head and tail).
    digest: bytes
    #: Position in the log, so that a question is only matched to earlier ones.
    order: int


def _candidates(
    vecs: np.ndarray, members: list[int], top_k: int, min_cosine: float
) -> list[tuple[int, int, float]]:
    """(earlier, later, cosine) for each later member's top_k earlier members above min_cosine."""
    out: list[tuple[int, int, float]] = []
    sub = vecs[members]
    block = 512
    for start in range(1, len(members), block):
        stop = min(len(members), start + block)
        sims = sub[start:stop] @ sub[:stop].T
        for r in range(stop - start):
            p = start + r
            row = sims[r, :p]
            k = min(top_k, p)
            best = np.argpartition(-row, k - 1)[:k] if k < p else np.arange(p)
            for j in best:
                if row[j] >= min_cosine:
                    out.append((members[int(j)], members[p], float(row[j])))
    return out


def near_duplicates(
    sample: list[QuestionSample],
    embed: Callable[[list[str]], np.ndarray],
    verifier: Verifier,
    *,
    top_k: int = 4,
    min_cosine: float = 0.7,
    threshold: float | None = None,
    examples: int = 5,
) -> dict[str, Any]:
    """Which sampled questions the semantic cache would answer from an earlier one.

    Returns counts (`candidates` pairs checked, `accepted` pairs, `matches` questions with an
    accepted earlier one), examples of accepted and refused pairs, each with the parts the
    verifier compared, and `matched_pairs`: (earlier, later) `order` of each match.
    """
    sample = sorted(sample, key=lambda s: s.order)
    groups: dict[bytes, list[int]] = {}
    for i, s in enumerate(sample):
        groups.setdefault(s.group, []).append(i)
    # What each question is embedded as: itself without the segments its namespace shares.
    shown = [s.text for s in sample]
    stripped = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        shared = shared_segments(sample[i].text for i in members)
        if shared:
            for i in members:
                t = strip_segments(sample[i].text, shared)
                stripped += t != sample[i].text.strip()
                shown[i] = t
    known: dict[str, np.ndarray] = {}
    multi = [i for members in groups.values() if len(members) > 1 for i in members]
    vecs = np.zeros((len(sample), 1), dtype=np.float32)
    if multi:
        got = np.asarray(embed([shown[i] for i in multi]), dtype=np.float32)
        vecs = np.zeros((len(sample), got.shape[1]), dtype=np.float32)
        vecs[multi] = got
        for i, v in zip(multi, got, strict=True):
            known[shown[i]] = v

    def embed_known(texts: list[str]) -> np.ndarray:
        todo = [t for t in texts if t not in known]
        if todo:
            for t, v in zip(todo, np.asarray(embed(todo), dtype=np.float32), strict=True):
                known[t] = v
        return np.stack([known[t] for t in texts])

    pairs: list[tuple[int, int, float]] = []
    for members in groups.values():
        if len(members) > 1:
            pairs += _candidates(vecs, members, top_k, min_cosine)
    info: dict[str, Any] = {
        "sampled": len(sample),
        "namespaces": len(groups),
        "template_stripped": stripped,
        "candidates": len(pairs),
        "accepted": 0,
        "matches": 0,
        "match_cost": 0.0,
        "refused_by": {},
        "accepted_examples": [],
        "refused_examples": [],
        "matched_pairs": [],
    }
    if not pairs:
        return info

    def side(i: int) -> tuple[str, np.ndarray | None]:
        text = sample[i].text
        return (text, vecs[i]) if shown[i] == text.strip() else (text, None)

    verdicts, parts = verify_pairs(
        verifier, embed_known, [side(a) for a, _, _ in pairs], [side(b) for _, b, _ in pairs], threshold
    )
    # Both sides cut to the same head and tail, but different in between: not the same question.
    for n, (a, b, _) in enumerate(pairs):
        if parts[n] == ("", "") and sample[a].digest != sample[b].digest:
            verdicts[n] = Verdict(False, 0.0, "differs beyond the text kept")
    matched: dict[int, int] = {}
    refused_by: dict[str, int] = {}
    for n, ((_, b, _), v) in enumerate(zip(pairs, verdicts, strict=True)):
        if v.same:
            if b not in matched or v.score > verdicts[matched[b]].score:
                matched[b] = n
        else:
            refused_by[v.reason] = refused_by.get(v.reason, 0) + 1

    def example(n: int) -> dict[str, Any]:
        a, b, cos = pairs[n]
        pa, pb = parts[n]
        return {
            "a": sample[a].text[:EXAMPLE_CHARS],
            "b": sample[b].text[:EXAMPLE_CHARS],
            "compared_a": pa[:EXAMPLE_CHARS],
            "compared_b": pb[:EXAMPLE_CHARS],
            "cosine": round(cos, 4),
            "score": round(verdicts[n].score, 4),
            "reason": verdicts[n].reason,
        }

    accepted = sorted(matched.values(), key=lambda n: -verdicts[n].score)
    refused = sorted((n for n, v in enumerate(verdicts) if not v.same), key=lambda n: -pairs[n][2])
    info.update(
        accepted=sum(v.same for v in verdicts),
        matches=len(matched),
        match_cost=float(sum(sample[b].cost for b in matched)),
        refused_by=dict(sorted(refused_by.items(), key=lambda kv: -kv[1])),
        accepted_examples=[example(n) for n in accepted[:examples]],
        matched_pairs=[(sample[pairs[n][0]].order, sample[b].order) for b, n in matched.items()],
        refused_examples=[example(n) for n in refused[:examples]],
    )
    return info
