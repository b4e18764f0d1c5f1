"""Decides whether two questions ask the same thing, so that the semantic cache can be trusted.

A cosine threshold on sentence embeddings confuses "how do I lose 5 kg" with "how do I lose
50 kg", and "can I ..." with "can't I ...": on QQP, cosine >= 0.8 is right only 69% of the
time it hits. The verifier looks at what embeddings blur -- numbers, negations, names,
question words, which words differ -- together with the embedding geometry, and a gradient
boosted tree model (trained by `scripts/train_verifier.py`, provenance in docs/verifier.md)
turns that into a probability. Three guards are hard rules on top of the model: different
numbers, a negation on one side only, or the same words with a direction swapped ("convert
ethane to ethene" / "ethene to ethane") are never the same question.

The model ships as a `.npz` of plain arrays (no pickle): tree nodes, a projection of the
embeddings, the threshold and its metadata. Prediction is a few vectorised numpy steps.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "twenty": "20", "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
}  # fmt: skip
_NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "without",
    "cannot", "can't", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't",
    "won't", "wouldn't", "shouldn't", "couldn't", "haven't", "hasn't", "hadn't", "mustn't",
}  # fmt: skip
_QUESTION_WORDS = ("what", "why", "how", "when", "where", "who", "whom", "whose", "which")
_STOPWORDS = {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did",
    "i", "me", "my", "we", "our", "you", "your", "it", "its", "of", "in", "on", "at", "to",
    "for", "with", "by", "from", "as", "and", "or", "that", "this", "these", "those", "there",
    "can", "could", "should", "would", "will", "shall", "may", "might", "must", "have", "has",
    "had", "if", "so", "some", "any", "about", "into", "than", "then", "what", "why", "how",
    "when", "where", "who", "which", "s", "get", "one", "best", "way", "ways",
}  # fmt: skip
_COMPARATIVES = {"more", "less", "most", "least", "better", "worse", "before", "after", "first", "last"}

LEXICAL_FEATURES = (
    "cosine",
    "word_jaccard",
    "word_containment_min",
    "word_containment_max",
    "content_jaccard",
    "content_only_a",
    "content_only_b",
    "char3_jaccard",
    "length_ratio_words",
    "length_diff_chars_log",
    "numbers_a",
    "numbers_b",
    "numbers_equal",
    "numbers_differ",
    "numbers_one_side",
    "negation_a",
    "negation_b",
    "negation_differ",
    "caps_jaccard",
    "caps_only_one_side",
    "caps_any",
    "qword_same_first",
    "qword_jaccard",
    "comparatives_differ",
    "same_first_word",
    "same_last_word",
    "prefix_words_shared",
    "stem_jaccard",
    "stem_only_a",
    "stem_only_b",
    "word_sequence_ratio",
)


@dataclass(frozen=True)
class _Text:
    words: list[str]
    lower: list[str]
    content: set[str]
    numbers: frozenset[str]
    negations: int
    caps: set[str]
    qwords: list[str]
    chars3: set[str]
    stems: set[str]


def _stem(word: str) -> str:
    """A crude suffix strip, enough to match "books"/"book" and "learning"/"learn"."""
    for suffix in ("ing", "ies", "es", "ed", "ly", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


_CONTRACTIONS = (
    (re.compile(r"\b(can)'t\b", re.I), r"\1 not"),
    (re.compile(r"\b(won)'t\b", re.I), "will not"),
    (re.compile(r"n't\b", re.I), " not"),
    (re.compile(r"\b(what|that|it|there|who|where|how|here|when|why)'s\b", re.I), r"\1 is"),
    (re.compile(r"'re\b", re.I), " are"),
    (re.compile(r"'ve\b", re.I), " have"),
    (re.compile(r"'ll\b", re.I), " will"),
    (re.compile(r"'m\b", re.I), " am"),
    (re.compile(r"'d\b", re.I), " would"),
)


def expand_contractions(text: str) -> str:
    """ "What's" -> "What is", "don't" -> "do not": both spellings give the same words."""
    text = text.replace("\u2019", "'")
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text


def same_text(a: str, b: str) -> bool:
    """Equal once case, spacing, contractions and punctuation are set aside."""

    return _analyse(a).lower == _analyse(b).lower


@lru_cache(maxsize=8192)
def _analyse(text: str) -> _Text:
    text = expand_contractions(text)
    words = _WORD.findall(text)
    lower = [w.lower() for w in words]
    numbers = {n.replace(",", "") for n in _NUMBER.findall(text)}
    numbers |= {_NUMBER_WORDS[w] for w in lower if w in _NUMBER_WORDS}
    # Capitalised tokens that are not the first word of the text: names, places, products.
    caps = {w.lower() for i, w in enumerate(words) if i > 0 and w[:1].isupper() and w.lower() not in _STOPWORDS}
    qwords = [w for w in lower if w in _QUESTION_WORDS]
    squashed = " ".join(lower)
    chars3 = {squashed[i : i + 3] for i in range(max(0, len(squashed) - 2))}
    negations = sum(1 for w in lower if w in _NEGATIONS or w.endswith("n't"))
    content = {w for w in lower if w not in _STOPWORDS}
    stems = {_stem(w) for w in content}
    return _Text(words, lower, content, frozenset(numbers), negations, caps, qwords, chars3, stems)


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def numbers_differ(a: str, b: str) -> bool:
    """Both questions mention numbers and not the same ones, or only one mentions any."""
    na, nb = _analyse(a).numbers, _analyse(b).numbers
    return na != nb


def negation_differs(a: str, b: str) -> bool:
    """One question is negated and the other is not."""
    return (_analyse(a).negations % 2) != (_analyse(b).negations % 2)


#: Words that give a relation a direction: what stands before and after them cannot swap.
_DIRECTIONAL = frozenset(["to", "into", "onto", "from", "than", "toward", "towards"])
#: ... unless the relation is symmetric: "A is different from B" asks what "B is different from A" does.
_SYMMETRIC_BEFORE = frozenset(["different", "differ", "differs", "difference", "distinct", "apart", "separate"])


def _sides(t: _Text) -> dict[tuple[str, int], tuple[set[str], set[str]]]:
    """For the k-th occurrence of each directional word: the content words before and after."""
    out: dict[tuple[str, int], tuple[set[str], set[str]]] = {}
    seen: dict[str, int] = {}
    for i, w in enumerate(t.lower):
        if w in _DIRECTIONAL and not (i and t.lower[i - 1] in _SYMMETRIC_BEFORE):
            k = seen[w] = seen.get(w, -1) + 1
            before = {x for x in t.lower[:i] if x in t.content}
            after = {x for x in t.lower[i + 1 :] if x in t.content}
            out[w, k] = (before, after)
    return out


def direction_differs(a: str, b: str) -> bool:
    """The same content words, but a directed relation the other way round: "convert miles to
    kilometers" / "kilometers to miles", "drive from Texas to California" / the reverse, "is
    Rust faster than Go" / "Go faster than Rust": one word moved from before the directional
    word to after it, and another the other way.

    An embedding and every bag-of-words feature see these as one question; the answer to one
    is wrong for the other. Symmetric links ("X or Y", "X vs Y") are not directions, and moving
    a phrase round ("to Linux from Windows") is not a swap.
    """
    ta, tb = _analyse(a), _analyse(b)
    if ta.content != tb.content or len(ta.content) < 2:
        return False
    sb = _sides(tb)
    for key, (before_a, after_a) in _sides(ta).items():
        if key not in sb:
            continue
        before_b, after_b = sb[key]
        if (before_a & after_b) - before_b and (after_a & before_b) - after_b:
            return True
    return False


def lexical_features(a: str, b: str, cosine: float) -> list[float]:
    """The hand-made features of a pair, in the order of `LEXICAL_FEATURES`."""
    ta, tb = _analyse(a), _analyse(b)
    sa, sb = set(ta.lower), set(tb.lower)
    inter = len(sa & sb)
    na, nb = len(ta.lower), len(tb.lower)
    qa, qb = set(ta.qwords), set(tb.qwords)
    prefix = 0
    for x, y in zip(ta.lower, tb.lower, strict=False):
        if x != y:
            break
        prefix += 1
    return [
        cosine,
        _jaccard(sa, sb),
        inter / max(1, min(len(sa), len(sb))),
        inter / max(1, max(len(sa), len(sb))),
        _jaccard(ta.content, tb.content),
        float(len(ta.content - tb.content)),
        float(len(tb.content - ta.content)),
        _jaccard(ta.chars3, tb.chars3),
        min(na, nb) / max(1, max(na, nb)),
        float(np.log1p(abs(len(a) - len(b)))),
        float(len(ta.numbers)),
        float(len(tb.numbers)),
        float(bool(ta.numbers) and ta.numbers == tb.numbers),
        float(bool(ta.numbers) and bool(tb.numbers) and ta.numbers != tb.numbers),
        float(bool(ta.numbers) != bool(tb.numbers)),
        float(ta.negations),
        float(tb.negations),
        float((ta.negations % 2) != (tb.negations % 2)),
        _jaccard(ta.caps, tb.caps),
        float(len(ta.caps ^ tb.caps)),
        float(bool(ta.caps or tb.caps)),
        float(bool(ta.qwords) and bool(tb.qwords) and ta.qwords[0] == tb.qwords[0]),
        _jaccard(qa, qb),
        float((sa & _COMPARATIVES) != (sb & _COMPARATIVES)),
        float(bool(ta.lower) and bool(tb.lower) and ta.lower[0] == tb.lower[0]),
        float(bool(ta.lower) and bool(tb.lower) and ta.lower[-1] == tb.lower[-1]),
        float(prefix),
        _jaccard(ta.stems, tb.stems),
        float(len(ta.stems - tb.stems)),
        float(len(tb.stems - ta.stems)),
        difflib.SequenceMatcher(None, ta.lower, tb.lower, autojunk=False).ratio(),
    ]


def pair_features(
    texts_a: list[str], texts_b: list[str], emb_a: np.ndarray, emb_b: np.ndarray, projection: np.ndarray | None
) -> np.ndarray:
    """Features of each pair: lexical ones, then |Pa - Pb| and Pa * Pb for the projection P.

    Embeddings are unit vectors (so their dot product is the cosine). The projection keeps
    the interaction block small; `None` leaves it out.
    """
    cos = np.einsum("ij,ij->i", emb_a, emb_b)
    lex = np.array([lexical_features(a, b, float(c)) for a, b, c in zip(texts_a, texts_b, cos, strict=True)])
    lex = lex.reshape(len(texts_a), len(LEXICAL_FEATURES)).astype(np.float32)
    if projection is None:
        return lex
    pa, pb = emb_a @ projection, emb_b @ projection
    return np.hstack([lex, np.abs(pa - pb), pa * pb]).astype(np.float32)


class TreeEnsemble:
    """A binary gradient-boosted tree model held as padded arrays, predicted with numpy.

    Arrays are (trees, nodes): `feature`, `threshold`, `left`, `right`, `value`, `leaf`,
    `nan_left`; `baseline` is the raw score before the first tree.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.feature = arrays["feature"].astype(np.int64)
        self.threshold = arrays["threshold"].astype(np.float64)
        self.left = arrays["left"].astype(np.int64)
        self.right = arrays["right"].astype(np.int64)
        self.value = arrays["value"].astype(np.float64)
        self.leaf = arrays["leaf"].astype(bool)
        self.nan_left = arrays["nan_left"].astype(bool)
        self.baseline = float(arrays["baseline"])
        self.depth = int(arrays["depth"])
        self._walk: tuple[np.ndarray, ...] | None = None

    @classmethod
    def from_sklearn(cls, clf: Any) -> TreeEnsemble:
        """Copy a fitted binary `HistGradientBoostingClassifier` (numeric features only)."""
        predictors = [it[0] for it in clf._predictors]
        t, width = len(predictors), max(len(p.nodes) for p in predictors)
        out: dict[str, np.ndarray] = {
            "feature": np.zeros((t, width), np.int64),
            "threshold": np.zeros((t, width), np.float64),
            "left": np.zeros((t, width), np.int64),
            "right": np.zeros((t, width), np.int64),
            "value": np.zeros((t, width), np.float64),
            "leaf": np.ones((t, width), bool),
            "nan_left": np.zeros((t, width), bool),
        }
        depth = 0
        for i, p in enumerate(predictors):
            nodes = p.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            n = len(nodes)
            out["feature"][i, :n] = nodes["feature_idx"]
            out["threshold"][i, :n] = nodes["num_threshold"]
            out["left"][i, :n] = nodes["left"]
            out["right"][i, :n] = nodes["right"]
            out["value"][i, :n] = nodes["value"]
            out["leaf"][i, :n] = nodes["is_leaf"]
            out["nan_left"][i, :n] = nodes["missing_go_to_left"]
            depth = max(depth, int(nodes["depth"].max()))
        out["baseline"] = np.array(float(np.ravel(clf._baseline_prediction)[0]))
        out["depth"] = np.array(depth)
        return cls(out)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw (log-odds) scores for rows of `x`: all trees walked together, one level a step."""
        n, (t, width) = x.shape[0], self.feature.shape
        if self._walk is None:
            # Flattened tables in which a leaf points to itself, so a walk needs no leaf test.
            own = np.arange(t * width).reshape(t, width)
            self._walk = (
                np.where(self.leaf, own, self.left + own - own % width).ravel(),
                np.where(self.leaf, own, self.right + own - own % width).ravel(),
                np.where(self.leaf, 0, self.feature).ravel(),
                np.where(self.leaf, np.inf, self.threshold).ravel(),
                (self.nan_left & ~self.leaf).ravel(),
                self.value.ravel(),
            )
        left, right, feature, threshold, nan_left, value = self._walk
        node = np.broadcast_to(np.arange(t) * width, (n, t)).copy()
        for _ in range(self.depth):
            val = np.take_along_axis(x, feature[node], axis=1)
            go_left = (val <= threshold[node]) | (np.isnan(val) & nan_left[node])
            node = np.where(go_left, left[node], right[node])
        return self.baseline + value[node].sum(axis=1)

    def proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.raw(x)))


@dataclass
class Verdict:
    same: bool
    score: float
    reason: str


class Verifier:
    """Scores question pairs; `threshold` was chosen on validation for adjudicated precision >= 0.95."""

    def __init__(self, model: TreeEnsemble, projection: np.ndarray | None, threshold: float, meta: dict[str, Any]):
        self.model = model
        self.projection = projection
        self.threshold = threshold
        self.meta = meta

    @classmethod
    def load(cls, path: str | Path) -> Verifier:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: verifier format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        if list(meta.get("lexical_features", [])) != list(LEXICAL_FEATURES):
            raise ValueError(f"{path}: trained on other features than this code computes; retrain it")
        projection = arrays.pop("projection", None)
        if projection is not None and projection.size == 0:
            projection = None
        return cls(TreeEnsemble(arrays), projection, float(meta["threshold"]), meta)

    def save(self, path: str | Path) -> None:
        arrays: dict[str, Any] = {
            "feature": self.model.feature.astype(np.int32),
            "threshold": self.model.threshold,
            "left": self.model.left.astype(np.int32),
            "right": self.model.right.astype(np.int32),
            "value": self.model.value.astype(np.float32),
            "leaf": self.model.leaf,
            "nan_left": self.model.nan_left,
            "baseline": np.array(self.model.baseline),
            "depth": np.array(self.model.depth),
            "projection": self.projection if self.projection is not None else np.zeros((0,), np.float32),
            "meta": np.array(json.dumps({**self.meta, "threshold": self.threshold, "format": FORMAT_VERSION})),
        }
        np.savez_compressed(Path(path), **arrays)

    def scores(self, texts_a: list[str], texts_b: list[str], emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """Model probability that each pair asks the same question (guards not applied)."""
        if not texts_a:
            return np.zeros(0)
        x = pair_features(texts_a, texts_b, emb_a, emb_b, self.projection)
        return self.model.proba(x)

    def decide(
        self,
        texts_a: list[str],
        texts_b: list[str],
        emb_a: np.ndarray,
        emb_b: np.ndarray,
        threshold: float | None = None,
    ) -> list[Verdict]:
        """Verdicts for each pair: the guards first, then the model against the threshold."""
        cut = self.threshold if threshold is None else threshold
        probs = self.scores(texts_a, texts_b, emb_a, emb_b)
        out: list[Verdict] = []
        for a, b, p in zip(texts_a, texts_b, probs, strict=True):
            if same_text(a, b):
                out.append(Verdict(True, float(p), "same text"))
            elif numbers_differ(a, b):
                out.append(Verdict(False, float(p), "numbers differ"))
            elif negation_differs(a, b):
                out.append(Verdict(False, float(p), "negation differs"))
            elif direction_differs(a, b):
                out.append(Verdict(False, float(p), "direction differs"))
            else:
                out.append(Verdict(bool(p >= cut), float(p), "model"))
        return out

    def same(self, a: str, b: str, emb_a: np.ndarray, emb_b: np.ndarray, threshold: float | None = None) -> bool:
        return self.decide([a], [b], emb_a[None, :], emb_b[None, :], threshold)[0].same


DEFAULT_MODEL = "verifier.npz"


@lru_cache(maxsize=1)
def default_verifier() -> Verifier:
    """The verifier that ships in `thrifty/data/verifier.npz`."""
    ref = resources.files("thrifty") / "data" / DEFAULT_MODEL
    with resources.as_file(ref) as path:
        return Verifier.load(path)
