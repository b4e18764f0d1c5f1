"""Multi-hop aware selection: follow what the first picks name, keep each paragraph's head.

A single pass that scores each sentence against the question finds the first hop of a
multi-hop question ("the woman who portrayed Corliss Archer in Kiss and Tell") but often
not the second ("Shirley Temple ... served as Chief of Protocol"): the bridge passage shares
few words with the question, only with the first hop. Multi-hop retrievers chain: they read
what the first retrieval returned and search again with it. This module does the same over
one prompt's sentences, with no extra model call:

- structure: a paragraph's title line ("Ed Wood (film)", "Title: Ed Wood", "[3] Ed Wood") is
  cut off its first sentence, and each paragraph gets a subject: its title, else the name
  its lead sentence opens with ("James J. Andrews (c. 1829 - ...) was" -> "James J. Andrews");
- first hop: the single-pass score, plus a bonus for paragraphs whose subject the question
  names (`title`) and for the question's words spread over a paragraph (`passage_lexical`),
  plus a share of the paragraph's best score (`paragraph`), so a needed passage is kept whole
  before stray sentences of others;
- the first pass spends `seeds` of the budget; then every other sentence is scored again
  against the question plus what was selected: names the selection adds (`bridge`), and a
  `link` on the lead of each paragraph whose subject the selection names and the question
  does not; the rest of the budget goes by that score.

With `chain` on (the default) and room in the budget for the two best paragraphs whole, the
two hops are chosen per paragraph instead, the way a
multi-hop retriever ranks passages: each paragraph scores its best sentence, plus `named` when
the question names its whole subject (one of the two things a comparison asks about), plus
`unique` for each name or number of the question that no other paragraph holds (a rare film
title or nickname that points at one passage). The two best paragraphs are the seeds; every
other paragraph gains what links it to a seed: the seed names its subject (`follow`), it names
the seed's subject (`reverse`: the bridge reached the other way round), and the seed's new words
it holds (`bridge`). The best paragraph goes first, then sentences by their paragraph's score,
less `order` per sentence before them in the paragraph (the facts a passage is kept for are
mostly its first sentences), plus their own score. With less room (a tight budget on a
single-hop prompt, where one sentence answers) keeping passages whole costs the answer, and
the sentence-level second hop above is used.

Selection keeps, with each sentence, its paragraph's title line (`anchor` >= 1) or, where a
paragraph has none, its lead sentence (`anchor` >= 2): a title costs a few tokens and tells
the reader who "he" is. Anchors are paid from the same token budget as everything else.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thrifty.compress.sentences import Sentence
from thrifty.ledger.tokens import count_text

if TYPE_CHECKING:
    from thrifty.compress.extract import Weights

__all__ = [
    "Structure",
    "bridge_scores",
    "chain_scores",
    "first_hop",
    "named_share",
    "paragraph_prior",
    "second_hop",
    "select_anchored",
    "split_title_lines",
    "structure",
    "subject",
    "subjects_of",
    "unique_names",
]

#: A title line: short, one line, not ending like a sentence or a clause.
_TITLE_MAX_CHARS = 120
_TITLE_MAX_WORDS = 16
_NOT_TITLE_END = (".", "!", "?", ",", ";")
#: A partial name match links weakly: the share of the subject named, to this power.
_LINK_POWER = 4
#: The paragraph chain's links (a share of a subject named, 0..1) count to this power.
_CHAIN_POWER = 2
#: A question names at most this many passages' whole subjects for it to count as pointing.
_NAMED_MOST = 2
#: Names the question shares with one paragraph only count up to this many.
_UNIQUE_MOST = 2
#: The seeds of the paragraph chain: the best paragraphs before the links.
_SEEDS = 2
_TOKEN = re.compile(r"[^\W_][\w'’.-]*", re.UNICODE)


def split_title_lines(sentences: Sequence[Sentence]) -> tuple[list[Sentence], set[int]]:
    """Cut a paragraph's title line off its first sentence; returns the new list and the
    indices of the title lines in it.

    The sentence splitter joins "Ed Wood (film)\\nEd Wood is a 1994 film..." into one
    sentence because a title has no end punctuation. As its own span the title can be kept
    for a few tokens whenever its paragraph contributes a sentence.
    """
    out: list[Sentence] = []
    titles: set[int] = set()
    for i, s in enumerate(sentences):
        first = i == 0 or sentences[i - 1].paragraph != s.paragraph
        head_len = _title_lines(s.text) if first else 0
        if head_len:
            rest = s.text[head_len:]
            skip = len(rest) - len(rest.lstrip())
            head = s.text[:head_len].rstrip()
            titles.add(len(out))
            out.append(Sentence(s.start, s.start + len(head), s.paragraph, head))
            out.append(Sentence(s.start + head_len + skip, s.end, s.paragraph, rest[skip:]))
            continue
        out.append(s)
    return out, titles


def _title_lines(text: str, most: int = 3) -> int:
    """Length of the leading title lines of a paragraph's first sentence ("Context:" then
    "Title: Ed Wood", say), 0 when the first line reads like prose."""
    end = 0
    for _ in range(most):
        cut = text.find("\n", end)
        if cut < 0:
            break
        line = text[end:cut].strip()
        if (
            not line
            or len(line) > _TITLE_MAX_CHARS
            or len(line.split()) > _TITLE_MAX_WORDS
            or line.endswith(_NOT_TITLE_END)
        ):
            break
        end = cut + 1
    return end if text[end:].strip() else 0


@dataclass(frozen=True)
class Structure:
    """Where each paragraph starts: its anchor (title line, else lead sentence) per sentence."""

    #: index of the anchor sentence of each sentence's paragraph
    anchor: np.ndarray
    #: True for title lines (kept only as anchors, never scored on their own)
    is_title: np.ndarray


def structure(sentences: Sequence[Sentence], titles: set[int]) -> Structure:
    """Each sentence's paragraph anchor: the paragraph's first span (its title line if
    `titles` holds it, else its lead sentence)."""
    n = len(sentences)
    anchor = np.zeros(n, dtype=np.int64)
    current = 0
    for i, s in enumerate(sentences):
        if i == 0 or sentences[i - 1].paragraph != s.paragraph:
            current = i
        anchor[i] = current
    is_title = np.array([i in titles for i in range(n)], dtype=bool)
    return Structure(anchor, is_title)


def _terms(text: str) -> list[str]:
    """Lower-cased tokens of names, numbers and words (a light fold of a trailing 's)."""
    out = []
    for tok in _TOKEN.findall(text):
        tok = tok.strip(".-'’").lower()
        if tok.endswith(("'s", "’s")):
            tok = tok[:-2]
        if tok:
            out.append(tok)
    return out


_LABEL = re.compile(
    r"^\s*(?:#+\s*|\[\d+\]\s*|(?:document|doc|passage|source|title)\s*\[?\d*\]?\s*[:.)]?\s*)+", re.I
)
_PAREN = re.compile(r"\([^)]*\)")
_CONNECTORS = frozenset(["of", "the", "and", "de", "la", "le", "von", "van", "der", "du", "del", "&"])


def subject(text: str, is_title: bool) -> str:
    """What a paragraph is about: its title line without labels such as "[3]" or "Title:",
    else the leading name of its lead sentence ("James J. Andrews (c. 1829 - ..." -> "James
    J. Andrews"); a parenthetical ("(film)") is dropped."""
    if is_title:
        text = text.strip().splitlines()[-1]
    head = _LABEL.sub("", text)
    inline = re.match(r"\s*\[?\d*\]?\s*\(\s*title\s*:\s*([^)]*)\)", head, re.I)
    if inline:  # "Document [1](Title: X) text..." keeps its title inline
        return _PAREN.sub(" ", inline.group(1)).strip()
    if is_title:
        return _PAREN.sub(" ", head).strip()
    words: list[str] = []
    alias = re.match(r"[^(]{1,80}?\(([A-Z][^();:]{1,60})\)", head)
    for raw in head.split():
        if raw.startswith("("):
            break
        word = raw.strip(",;:\"'“”")
        if word and (word[0].isupper() or word[0].isdigit() or (words and word.lower() in _CONNECTORS)):
            words.append(word)
            if raw.endswith((",", ";", ":")):
                break
        else:
            break
    while words and words[-1].lower() in _CONNECTORS:
        words.pop()
    if alias and words:  # "The Kritikos Lagonikos (Cretan Hound) is ...": both names count
        words.append(alias.group(1).strip())
    return " ".join(words)


def subjects_of(sentences: Sequence[Sentence], shape: Structure, heads: Sequence[int]) -> list[str]:
    """The subject of each paragraph (given by its anchor index); a title line that is only a
    label ("Context:") gives way to the lead sentence's name."""
    out = []
    for h in heads:
        name = subject(sentences[h].text, bool(shape.is_title[h]))
        if shape.is_title[h] and (not name or name.endswith(":")) and h + 1 < len(sentences):
            name = subject(sentences[h + 1].text, False)
        out.append(name)
    return out


def named_share(
    subjects: Sequence[str], text: str, idf: dict[str, float], stop: frozenset[str]
) -> np.ndarray:
    """For each subject, the IDF-weighted share of its words that `text` names (0..1)."""
    have = set(_terms(text))
    out = np.zeros(len(subjects), dtype=np.float32)
    for k, subj in enumerate(subjects):
        terms = [t for t in set(_terms(subj)) if t not in stop]
        total = sum(idf.get(t, 1.0) for t in terms)
        if total:
            out[k] = sum(idf.get(t, 1.0) for t in terms if t in have) / total
    return out


def _idf(texts: Sequence[str]) -> dict[str, float]:
    df: Counter[str] = Counter()
    for t in texts:
        df.update(set(_terms(t)))
    n = len(texts)
    return {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items()}


def bridge_scores(
    question: str, seeds: Sequence[str], texts: Sequence[str], stop: frozenset[str]
) -> np.ndarray:
    """IDF-weighted share of the seeds' new terms (not in the question, not stop words) that
    each text holds, 0..1. Capitalised words and numbers (names, dates) weigh double."""
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    bags = [set(_terms(t)) for t in texts]
    df: Counter[str] = Counter()
    for bag in bags:
        df.update(bag)
    asked = set(_terms(question))
    weight: dict[str, float] = {}
    for seed in seeds:
        for raw in _TOKEN.findall(seed):
            term = (_terms(raw) or [""])[0]
            if not term or term in asked or term in stop or len(term) < 2:
                continue
            idf = math.log((n + 1) / (df[term] + 0.5))
            if idf <= 0:
                continue
            named = raw[:1].isupper() or raw[:1].isdigit()
            weight[term] = max(weight.get(term, 0.0), idf * (2.0 if named else 1.0))
    total = sum(weight.values())
    if not total:
        return np.zeros(n, dtype=np.float32)
    # A sentence cannot hold every new term of several seeds: normalise by the best one.
    raw_scores = np.array([sum(w for t, w in weight.items() if t in bag) for bag in bags], dtype=np.float32)
    top = float(raw_scores.max()) or 1.0
    return raw_scores / top


def _paragraph_map(
    shape: Structure, values: Sequence[float] | np.ndarray, heads: Sequence[int]
) -> np.ndarray:
    """Spread one value per paragraph (given for each head in `heads`) over its sentences."""
    out = np.zeros(len(shape.anchor), dtype=np.float32)
    for k, h in enumerate(heads):
        out[shape.anchor == h] = values[k]
    return out


def paragraph_prior(scores: np.ndarray, shape: Structure, weight: float) -> np.ndarray:
    """Each sentence gets `weight` times its paragraph's best score: the needed passage is
    kept as a whole before a stray sentence of another one."""
    if not weight or len(scores) == 0:
        return scores
    best = np.full(len(scores), -np.inf, dtype=np.float32)
    for i in np.flatnonzero(~shape.is_title).tolist():
        a = int(shape.anchor[i])
        best[a] = max(best[a], scores[i])
    prior = best[shape.anchor]
    prior = np.where(np.isfinite(prior), prior, 0.0)
    return (scores + weight * prior).astype(np.float32)


def first_hop(
    question: str,
    sentences: Sequence[Sentence],
    first: np.ndarray,
    weights: Weights,
    shape: Structure,
    stop: frozenset[str],
    lexical: Callable[[str, Sequence[str]], np.ndarray],
) -> np.ndarray:
    """The single-pass scores with the paragraph structure added: a bonus for paragraphs whose
    subject the question names (`title`) and the paragraph prior (`paragraph`)."""
    scores = first.astype(np.float32).copy()
    if weights.title and len(sentences):
        heads = sorted(set(shape.anchor.tolist()))
        idf = _idf([s.text for s in sentences])
        subjects = subjects_of(sentences, shape, heads)
        shares = named_share(subjects, question, idf, stop)
        # A question points at one or two passages (where a chain starts, or the two things it
        # compares). When it names the subject of more, that name is the prompt's common
        # topic (every passage of an article about the Normans), not a pointer.
        pointed = int((shares >= 0.5).sum())
        if pointed > 2:
            shares = shares * (2.0 / pointed)
        named = _paragraph_map(shape, shares, heads)
        scores = (scores + weights.title * named).astype(np.float32)
    if weights.passage_lexical and len(sentences):
        # The question's words spread over a passage (a name in one sentence, the event in
        # the next) still mark the passage that answers.
        heads = sorted(set(shape.anchor.tolist()))
        bodies = [" ".join(s.text for i, s in enumerate(sentences) if shape.anchor[i] == h) for h in heads]
        spread = _paragraph_map(shape, lexical(question, bodies), heads)
        scores = (scores + weights.passage_lexical * spread).astype(np.float32)
    return paragraph_prior(scores, shape, weights.paragraph)


def second_hop(
    question: str,
    sentences: Sequence[Sentence],
    first: np.ndarray,
    selected: Sequence[int],
    weights: Weights,
    shape: Structure,
    stop: frozenset[str],
) -> np.ndarray:
    """Scores for the rest of the budget: `first` plus `weights.hop` times the score against
    the question plus what the first pass `selected`."""
    n = len(sentences)
    chosen = [i for i in selected if not shape.is_title[i]]
    if n == 0 or not weights.hop or not chosen:
        return first
    texts = [s.text for s in sentences]
    seed_texts = [texts[i] for i in chosen]
    heads = {int(shape.anchor[i]) for i in chosen}
    # Bridge words: names the selection adds to the question, wherever they appear.
    score = weights.bridge * bridge_scores(question, seed_texts, texts, stop)
    # Link: a paragraph whose subject (title, or the name its lead opens with) the selection
    # names is the next hop. Only words neither the question nor the selected paragraphs'
    # own subjects hold count: paragraphs about the question's topic are not a second hop.
    all_heads = sorted(set(shape.anchor.tolist()))
    subjects = dict(zip(all_heads, subjects_of(sentences, shape, all_heads), strict=True))
    known = set(_terms(question))
    for h in heads:
        known.update(_terms(subjects[h]))
    idf = _idf(texts)
    joined = " ".join(seed_texts)
    link = np.zeros(n, dtype=np.float32)
    for h in all_heads:
        if h in heads:
            continue
        new_words = " ".join(t for t in _terms(subjects[h]) if t not in known)
        if not new_words:
            continue
        share = float(named_share([new_words], joined, idf, stop)[0])
        link[shape.anchor == h] = share**_LINK_POWER
    score = score + weights.link * link
    # The hop's evidence spreads over its paragraph like the first pass's did.
    return first + paragraph_prior(weights.hop * score.astype(np.float32), shape, weights.paragraph)


def unique_names(question: str, bodies: Sequence[str], stop: frozenset[str]) -> np.ndarray:
    """Per paragraph body, how many of the question's names (capitalised words and numbers of
    3 characters or more, not stop words) appear in that body and in no other."""
    bags = [set(_terms(b)) for b in bodies]
    out = np.zeros(len(bodies), dtype=np.float32)
    seen: set[str] = set()
    for raw in _TOKEN.findall(question):
        term = (_terms(raw) or [""])[0]
        if len(term) < 3 or term in stop or term in seen or not (raw[:1].isupper() or raw[:1].isdigit()):
            continue
        seen.add(term)
        holders = [k for k, bag in enumerate(bags) if term in bag]
        if len(holders) == 1:
            out[holders[0]] += 1
    return out


def chain_scores(
    question: str,
    sentences: Sequence[Sentence],
    first: np.ndarray,
    weights: Weights,
    shape: Structure,
    stop: frozenset[str],
    count: Callable[[str], int] = count_text,
) -> tuple[np.ndarray, int]:
    """Selection order over paragraphs, then sentences (higher keeps first), see the module
    docstring; and the tokens the two seed paragraphs cost whole (title lines included), so
    that the caller can tell whether both hops fit. `first` holds the first hop's sentence
    scores (title lines are never kept on their own, whatever their score here)."""
    n = len(sentences)
    if n == 0:
        return first, 0
    heads = sorted(set(shape.anchor.tolist()))
    para = np.searchsorted(np.array(heads), shape.anchor)
    body_of = [[i for i in range(n) if para[i] == k and not shape.is_title[i]] for k in range(len(heads))]
    bodies = [" ".join(sentences[i].text for i in members) for members in body_of]
    best = np.array([max((first[i] for i in m), default=-np.inf) for m in body_of], dtype=np.float64)
    floor = float(best[np.isfinite(best)].min()) - 1.0 if np.isfinite(best).any() else 0.0
    best = np.where(np.isfinite(best), best, floor)
    subjects = subjects_of(sentences, shape, heads)
    idf = _idf([s.text for s in sentences])
    named = named_share(subjects, question, idf, stop) >= 0.999
    if named.sum() > _NAMED_MOST:  # the prompt's common topic, not a pointer (see first_hop)
        named[:] = False
    para_score = (
        best
        + weights.named * named
        + weights.unique * np.minimum(unique_names(question, bodies, stop), _UNIQUE_MOST)
    )
    order = np.argsort(-para_score, kind="stable")
    seeds = [int(k) for k in order[:_SEEDS] if body_of[int(k)]]
    asked = set(_terms(question))
    link = np.zeros(len(heads), dtype=np.float64)
    for seed in seeds:
        seed_known = asked | set(_terms(subjects[seed]))
        via = weights.bridge * bridge_scores(question, [bodies[seed]], bodies, stop)
        for k in range(len(heads)):
            if k in seeds or not body_of[k]:
                continue
            follow = " ".join(t for t in _terms(subjects[k]) if t not in seed_known)
            back = " ".join(t for t in _terms(subjects[seed]) if t not in asked | set(_terms(subjects[k])))
            names = float(named_share([follow], bodies[seed], idf, stop)[0]) if follow else 0.0
            named_back = float(named_share([back], bodies[k], idf, stop)[0]) if back else 0.0
            value = (
                weights.follow * names**_CHAIN_POWER
                + weights.reverse * named_back**_CHAIN_POWER
                + float(via[k])
            )
            link[k] = max(link[k], value)
    para_score = para_score + link
    position = np.zeros(n, dtype=np.float64)
    for members in body_of:
        for rank_in, i in enumerate(members):
            position[i] = rank_in
    seeds_cost = sum(count(s.text) + 1 for i, s in enumerate(sentences) if int(para[i]) in seeds)
    return (weights.chain * para_score[para] - weights.order * position + first).astype(np.float32), seeds_cost


def select_anchored(
    sentences: Sequence[Sentence],
    scores: np.ndarray,
    budget: int,
    shape: Structure,
    count: Callable[[str], int] = count_text,
    anchor_leads: bool = True,
    start: Sequence[int] = (),
    anchor_titles: bool = True,
    stop_at: int | None = None,
) -> list[int]:
    """Best sentences within `budget` tokens, each with its paragraph's title line (or lead
    sentence, with `anchor_leads`) kept alongside; in original order. `start`: sentences
    already kept, whose cost counts against the budget. `stop_at`: stop once this many
    tokens are used (the sentence that crosses it is still kept), instead of filling the
    budget with whatever small sentences still fit."""
    cost = [count(s.text) + 1 for s in sentences]
    kept: set[int] = set(start)
    used = sum(cost[i] for i in kept)
    order = [i for i in np.argsort(-scores, kind="stable").tolist() if not shape.is_title[i]]
    for i in order:
        if stop_at is not None and used >= stop_at:
            break
        if i in kept:
            continue
        head = int(shape.anchor[i])
        need = [i]
        if head != i and head not in kept and (anchor_titles if shape.is_title[head] else anchor_leads):
            need.append(head)
        extra = sum(cost[j] for j in need)
        if used + extra <= budget:  # a sentence never goes without its anchor
            kept.update(need)
            used += extra
    return sorted(kept)
