"""Extractive context compression: keep the sentences that matter to the question.

Each sentence of the context is scored on four features, then the best are kept, in their
original order, until the token budget is spent:

- embedding relevance: cosine of the sentence and the question (all-MiniLM-L6-v2);
- passage relevance: cosine of the sentence's paragraph (the normalised mean of its
  sentence vectors, so no extra model run) and the question, because the answer usually
  sits in the passage that is about the question even when its own sentence says "he";
- lexical overlap: IDF-weighted share of the question's words the sentence holds (names,
  numbers and rare words that embeddings blur);
- position: a small bonus for a paragraph's opening sentence, which names its subject.

A sentence next to a high-scoring one gets a share of its neighbour's score, so that an
answer stated one sentence after the question's keywords survives. With the embedding
weights at 0 the embedder is never called: lexical-only compression is much faster and
a little less precise (see benchmarks/compression.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from thrifty.compress.sentences import Sentence, split_sentences
from thrifty.ledger.tokens import count_text


class Embedder(Protocol):
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...


@dataclass(frozen=True)
class Weights:
    embedding: float = 1.0
    passage: float = 0.6
    lexical: float = 0.8
    position: float = 0.05
    neighbour: float = 0.35


@dataclass
class Extract:
    """The compressed context and what was kept."""

    text: str
    kept: list[int]
    sentences: list[Sentence]
    tokens_before: int
    tokens_after: int
    scores: list[float] = field(default_factory=list)


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "that",
        "this",
        "these",
        "those",
        "it",
        "its",
        "as",
        "into",
        "than",
        "then",
        "there",
        "their",
        "they",
        "them",
        "he",
        "she",
        "his",
        "her",
        "has",
        "have",
        "had",
        "not",
        "no",
        "yes",
        "can",
        "could",
        "would",
        "should",
        "will",
        "may",
        "might",
        "must",
        "shall",
        "about",
        "after",
        "before",
        "over",
        "under",
        "between",
        "during",
    ]
)


def words(text: str) -> list[str]:
    """Lower-cased content words with a light plural/suffix fold."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def lexical_scores(question: str, sentences: Sequence[str]) -> np.ndarray:
    """IDF-weighted fraction of the question's words present in each sentence (0..1)."""
    n = len(sentences)
    bags = [set(words(s)) for s in sentences]
    df: Counter[str] = Counter()
    for bag in bags:
        df.update(bag)
    q = set(words(question))
    if not q or n == 0:
        return np.zeros(n, dtype=np.float32)
    idf = {w: math.log((n + 1) / (df[w] + 0.5)) for w in q}
    total = sum(idf.values()) or 1.0
    return np.array([sum(idf[w] for w in q if w in bag) / total for bag in bags], dtype=np.float32)


def score_sentences(
    question: str, sentences: Sequence[Sentence], embedder: Embedder | None, weights: Weights = Weights()
) -> np.ndarray:
    """A relevance score per sentence (higher keeps first)."""
    n = len(sentences)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    texts = [s.text for s in sentences]
    score = weights.lexical * lexical_scores(question, texts)
    if embedder is not None and (weights.embedding or weights.passage):
        vecs = embedder.embed([question, *texts])
        qv = vecs[0]
        sent_vecs = vecs[1:]
        score = score + weights.embedding * (sent_vecs @ qv)
        if weights.passage:
            # A paragraph's vector is the normalised mean of its sentences' vectors: close to
            # embedding the paragraph itself, at no extra model cost.
            para_of = np.array([s.paragraph for s in sentences])
            para_sim = np.zeros(n, dtype=np.float32)
            for p in np.unique(para_of):
                members = para_of == p
                mean = sent_vecs[members].mean(axis=0)
                norm = float(np.linalg.norm(mean)) or 1.0
                para_sim[members] = float(mean @ qv) / norm
            score = score + weights.passage * para_sim
    first = np.array(
        [i == 0 or sentences[i - 1].paragraph != s.paragraph for i, s in enumerate(sentences)],
        dtype=np.float32,
    )
    score = score + weights.position * first
    if weights.neighbour and n > 1:
        same_prev = np.array(
            [i > 0 and sentences[i - 1].paragraph == s.paragraph for i, s in enumerate(sentences)]
        )
        same_next = np.array(
            [i < n - 1 and sentences[i + 1].paragraph == s.paragraph for i, s in enumerate(sentences)]
        )
        prev = np.where(same_prev, np.roll(score, 1), -np.inf)
        nxt = np.where(same_next, np.roll(score, -1), -np.inf)
        best = np.maximum(prev, nxt)
        score = score + weights.neighbour * np.where(np.isfinite(best), np.maximum(best - score, 0.0), 0.0)
    return score.astype(np.float32)


def select(
    sentences: Sequence[Sentence], scores: np.ndarray, budget: int, count: Callable[[str], int] = count_text
) -> list[int]:
    """Indices of the best-scoring sentences that fit in `budget` tokens, in original order."""
    kept: list[int] = []
    used = 0
    for i in np.argsort(-scores, kind="stable").tolist():
        cost = count(sentences[i].text) + 1
        if used + cost <= budget:
            kept.append(i)
            used += cost
    return sorted(kept)


def join(text: str, sentences: Sequence[Sentence], kept: Sequence[int]) -> str:
    """The kept sentences as text: spaces within a paragraph, blank lines between."""
    out: list[str] = []
    last_para: int | None = None
    for i in kept:
        s = sentences[i]
        if last_para is not None:
            out.append("\n\n" if s.paragraph != last_para else " ")
        out.append(text[s.start : s.end])
        last_para = s.paragraph
    return "".join(out)


def compress(
    question: str,
    context: str,
    budget: int,
    embedder: Embedder | None,
    weights: Weights = Weights(),
) -> Extract:
    """Keep the sentences of `context` most relevant to `question` within `budget` tokens."""
    sentences = split_sentences(context)
    before = count_text(context)
    if before <= budget:
        return Extract(context, list(range(len(sentences))), sentences, before, before)
    scores = score_sentences(question, sentences, embedder, weights)
    kept = select(sentences, scores, budget)
    text = join(context, sentences, kept)
    return Extract(text, kept, sentences, before, count_text(text), scores.tolist())


#: What stands in for a context part of which no sentence was kept (APIs refuse empty text).
OMITTED = "[omitted]"


def compress_many(
    question: str,
    contexts: Sequence[str],
    budget: int,
    embedder: Embedder | None,
    weights: Weights = Weights(),
) -> list[str]:
    """Like `compress` over several context parts at once: the sentences compete for one
    budget, so the part that answers the question keeps more of it."""
    sentences: list[Sentence] = []
    owner: list[int] = []
    offset = 0
    for ci, context in enumerate(contexts):
        own = split_sentences(context)
        for s in own:
            sentences.append(Sentence(s.start, s.end, s.paragraph + offset, s.text))
            owner.append(ci)
        offset += (own[-1].paragraph + 1) if own else 0
    if sum(count_text(c) for c in contexts) <= budget:
        return list(contexts)
    scores = score_sentences(question, sentences, embedder, weights)
    kept = select(sentences, scores, budget)
    out = []
    for ci, context in enumerate(contexts):
        text = join(context, sentences, [i for i in kept if owner[i] == ci])
        out.append(text if text or not context.strip() else OMITTED)
    return out
