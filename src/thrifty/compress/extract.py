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

For questions that need two passages (thrifty.compress.multihop), a budget that holds the two
best paragraphs whole chains paragraphs (seeds, then what links to them); a tighter one gets a
second hop that scores the sentences again against the question plus the first picks. Each
kept sentence brings its paragraph's title line or lead sentence along; `hop` = 0 and
`anchor` = 0 turn both off, `chain` = 0 the paragraph chain only.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from thrifty.compress.multihop import (
    chain_scores,
    first_hop,
    second_hop,
    select_anchored,
    split_title_lines,
    structure,
)
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
    #: weight of the second-hop score (0: single pass); see thrifty.compress.multihop
    hop: float = 1.0
    #: share of the budget the first pass spends before the second hop takes over
    seeds: float = 0.5
    #: second hop: the selection's new names found in a sentence, and in its paragraph's subject
    bridge: float = 0.2
    link: float = 0.6
    #: share of its paragraph's best score that each sentence gets
    paragraph: float = 0.6
    #: bonus for the sentences of a paragraph whose subject (title) the question names
    title: float = 0.15
    #: lexical overlap of the question and a sentence's whole paragraph
    passage_lexical: float = 0.3
    #: keep a kept sentence's paragraph title line (1) and, with 2, its lead sentence when
    #: the paragraph has no title line; 0 keeps neither
    anchor: float = 1
    #: choose the hops per paragraph when the budget holds the two best paragraphs whole (the
    #: weight of the paragraph's score in each sentence's), instead of by a second sentence
    #: pass (0); the paragraph chain's weights follow (see thrifty.compress.multihop)
    chain: float = 1.0
    #: the budget must hold this many times the two best paragraphs for the chain to be used
    room: float = 1.5
    #: the question names a paragraph's whole subject
    named: float = 2.0
    #: per name of the question that only that paragraph holds (at most two count)
    unique: float = 0.5
    #: a seed paragraph names this paragraph's subject / this paragraph names the seed's
    follow: float = 1.5
    reverse: float = 0.3
    #: per sentence before it in its paragraph
    order: float = 0.1


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
    return _first_pass(question, sentences, embedder, weights)[0]


def _first_pass(
    question: str, sentences: Sequence[Sentence], embedder: Embedder | None, weights: Weights
) -> tuple[np.ndarray, np.ndarray | None]:
    """The single-pass scores, and the sentence vectors when the embedder was used."""
    n = len(sentences)
    if n == 0:
        return np.zeros(0, dtype=np.float32), None
    texts = [s.text for s in sentences]
    score = weights.lexical * lexical_scores(question, texts)
    sent_vecs: np.ndarray | None = None
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
    return score.astype(np.float32), sent_vecs


def rank(
    question: str,
    sentences: Sequence[Sentence],
    titles: set[int],
    budget: int,
    embedder: Embedder | None,
    weights: Weights,
) -> tuple[list[int], np.ndarray]:
    """Score and select: the kept indices (in order) and the scores. `titles` are the
    indices of title lines (see thrifty.compress.multihop.split_title_lines)."""
    shape = structure(sentences, titles)
    scores, _ = _first_pass(question, sentences, embedder, weights)
    if len(sentences) and shape.is_title.any():
        # Title lines are kept as anchors only: they must not win a place on their own.
        scores = np.where(shape.is_title, np.float32(scores.min() - 1.0), scores).astype(np.float32)
    scores = first_hop(question, sentences, scores, weights, shape, _STOP, lexical_scores)
    titles_on, leads_on = weights.anchor >= 1, weights.anchor >= 2
    if not weights.hop:
        kept = select_anchored(sentences, scores, budget, shape, anchor_leads=leads_on, anchor_titles=titles_on)
        return kept, scores
    if weights.chain:
        chained, seeds_cost = chain_scores(question, sentences, scores, weights, shape, _STOP)
        if seeds_cost * weights.room <= budget:  # both hops fit whole, with room: by paragraph
            kept = select_anchored(
                sentences, chained, budget, shape, anchor_leads=leads_on, anchor_titles=titles_on
            )
            return kept, chained
    # Two hops: the first pass spends `seeds` of the budget, then what it kept steers the rest.
    kept = select_anchored(
        sentences, scores, budget, shape, anchor_leads=leads_on, anchor_titles=titles_on,
        stop_at=int(budget * weights.seeds),
    )
    scores = second_hop(question, sentences, scores, kept, weights, shape, _STOP)
    kept = select_anchored(
        sentences, scores, budget, shape, anchor_leads=leads_on, anchor_titles=titles_on, start=kept
    )
    return kept, scores


def _sentences(context: str, weights: Weights) -> tuple[list[Sentence], set[int]]:
    """Sentences, with title lines cut off their paragraph's first sentence when anchors are on."""
    sentences = split_sentences(context)
    return split_title_lines(sentences) if weights.anchor else (sentences, set())


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
    """The kept sentences as text: blank lines between paragraphs; within one, the original
    whitespace between neighbours (a title's line break) and a space across a gap."""
    out: list[str] = []
    last: Sentence | None = None
    for i in kept:
        s = sentences[i]
        if last is not None:
            if s.paragraph != last.paragraph:
                out.append("\n\n")
            else:
                gap = text[last.end : s.start]
                if gap and not gap.strip():  # neighbours: the source's own whitespace
                    out.append(gap)
                else:  # a gap: a line break if one followed the last span (a title), else a space
                    after = text[last.end : last.end + len(gap) - len(gap.lstrip())]
                    out.append("\n" if "\n" in after else " ")
        out.append(text[s.start : s.end])
        last = s
    return "".join(out)


def compress(
    question: str,
    context: str,
    budget: int,
    embedder: Embedder | None,
    weights: Weights = Weights(),
) -> Extract:
    """Keep the sentences of `context` most relevant to `question` within `budget` tokens."""
    sentences, titles = _sentences(context, weights)
    before = count_text(context)
    if before <= budget:
        return Extract(context, list(range(len(sentences))), sentences, before, before)
    kept, scores = rank(question, sentences, titles, budget, embedder, weights)
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
    titles: set[int] = set()
    owner: list[int] = []
    offset = 0
    for ci, context in enumerate(contexts):
        own, own_titles = _sentences(context, weights)
        titles.update(len(sentences) + t for t in own_titles)
        for s in own:
            sentences.append(Sentence(s.start, s.end, s.paragraph + offset, s.text))
            owner.append(ci)
        offset += (own[-1].paragraph + 1) if own else 0
    if sum(count_text(c) for c in contexts) <= budget:
        return list(contexts)
    kept, _ = rank(question, sentences, titles, budget, embedder, weights)
    out = []
    for ci, context in enumerate(contexts):
        text = join(context, sentences, [i for i in kept if owner[i] == ci])
        out.append(text if text or not context.strip() else OMITTED)
    return out
