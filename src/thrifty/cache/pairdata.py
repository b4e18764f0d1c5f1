"""The question-pair data the verifier learns from, and the fixed split that keeps its test apart.

QQP questions recur across pairs, so a split by pair would let a question seen in training
show up again in the test. Pairs that share a question (after lower-casing and collapsing
white space) form one group, and a group's split is decided by the sha256 of its smallest
question: digits 0-5 of the first 8 hex digits mod 10 train, 6-7 validate, 8-9 test. The
rule needs no seed and gives the same split on every machine; the training script only
ever reads `train` (and `val` for the threshold), the benchmark only `test`.

QQP labels many same-question pairs "different". Where the verifier would serve such a pair,
a reader's verdict (benchmarks/data/qqp_adjudication.jsonl, keyed by `pair_key`) says whether
a cache would rightly serve it; `adjudicated_labels` applies the verdicts, so precision is
measured as a user would see it (docs/verifier.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Split = Literal["train", "val", "test"]

QQP_FILE = "cache/qqp_dev.jsonl"
MOCK_FILE = "cache/gptcache_mock_data.json"


def shared_data(relative: str, start: Path | None = None) -> Path:
    """A file of the evaluation data: `$THRIFTY_SHARED_DATA/relative`, else the first
    `shared/data/relative` beside the project root or one of its parents (../shared/data
    from a checkout, ../../shared/data from a worktree)."""
    env = os.environ.get("THRIFTY_SHARED_DATA")
    if env:
        return Path(env) / relative
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "data" / relative
        if candidate.exists():
            return candidate
    return Path("../shared/data") / relative


@dataclass(frozen=True)
class Pair:
    text_a: str
    text_b: str
    label: int
    split: Split


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def split_of_key(key: str) -> Split:
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10
    if bucket < 6:
        return "train"
    if bucket < 8:
        return "val"
    return "test"


def assign_splits(rows: list[tuple[str, str, int]]) -> list[Pair]:
    """Split pairs by connected group of shared questions (see the module docstring)."""
    keys = group_keys([(a, b) for a, b, _ in rows])
    return [Pair(a, b, label, split_of_key(key)) for (a, b, label), key in zip(rows, keys, strict=True)]


def group_keys(rows: list[tuple[str, str]]) -> list[str]:
    """For each pair, the smallest normalised question of its group (pairs linked by a shared question)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in rows:
        ra, rb = find(normalise(a)), find(normalise(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    smallest: dict[str, str] = {}
    for q in list(parent):
        root = find(q)
        if root not in smallest or q < smallest[root]:
            smallest[root] = q
    return [smallest[find(normalise(a))] for a, _ in rows]


def load_qqp(path: Path | None = None) -> list[Pair]:
    """Read `qqp_dev.jsonl` (text_a, text_b, label) and assign each pair its split."""
    rows: list[tuple[str, str, int]] = []
    path = path or shared_data(QQP_FILE)
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((str(r["text_a"]), str(r["text_b"]), int(r["label"])))
    return assign_splits(rows)


def load_pairs(path: Path) -> list[Pair]:
    """A file of pairs in QQP's format (`text_a`, `text_b`, `label` per JSON line) held out
    from everything: each pair is test data, whatever the split rule would say."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            try:
                rows.append(Pair(str(r["text_a"]), str(r["text_b"]), int(r["label"]), "test"))
            except KeyError as missing:
                raise ValueError(f"{path}:{n}: a pair needs text_a, text_b and label; {missing} is missing") from None
    return rows


def load_mock_pairs(path: Path | None = None) -> list[tuple[str, str]]:
    """GPTCache's paraphrase pairs (origin, similar): positives only, used for training."""
    path = path or shared_data(MOCK_FILE)
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(str(d["origin"]), str(d["similar"])) for d in data]


def embed_cached(texts: list[str], cache_dir: Path | None = None) -> np.ndarray:
    """Embed `texts` with the shipped embedder, keeping every vector on disk for the next run.

    The training script and the benchmark embed the same 40,000 questions (minutes on a
    laptop core); the bank file maps each text to its vector, so only new texts are embedded.
    """
    from thrifty.embed import shared_embedder

    folder = cache_dir or Path.home() / ".cache" / "thrifty"
    path = folder / "qqp-embedding-bank.npz"
    known: dict[str, int] = {}
    bank = np.zeros((0, 384), np.float32)
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            bank = data["vectors"]
            known = {t: i for i, t in enumerate(data["texts"].tolist())}
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        vecs = shared_embedder().embed(missing, batch_size=64)
        for t in missing:
            known[t] = len(known)
        bank = np.vstack([bank, vecs])
        folder.mkdir(parents=True, exist_ok=True)
        ordered = sorted(known, key=known.__getitem__)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.array(ordered), vectors=bank)
        tmp.replace(path)
    return bank[[known[t] for t in texts]]


def embedded_split(split: Split) -> tuple[list[Pair], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The QQP pairs of one split with their labels, both sides' embeddings and the cosines."""
    pairs = [p for p in load_qqp() if p.split == split]
    return (pairs, *embedded_pairs(pairs))


def embedded_pairs(pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The labels of `pairs`, both sides' embeddings and their cosines."""
    emb = embed_cached([p.text_a for p in pairs] + [p.text_b for p in pairs])
    ea, eb = emb[: len(pairs)], emb[len(pairs) :]
    return np.array([p.label for p in pairs]), ea, eb, np.einsum("ij,ij->i", ea, eb)


ADJUDICATION_FILE = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "qqp_adjudication.jsonl"


def pair_key(text_a: str, text_b: str) -> str:
    """A stable key for a QQP pair: the first 16 hex digits of the sha256 of both texts in order."""
    return hashlib.sha256(f"{text_a}\n{text_b}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Adjudication:
    """One reader's verdict on a pair QQP labels one way and the verifier decides the other."""

    key: str
    split: Split
    text_a: str
    text_b: str
    qqp_label: int
    verdict: Literal["same", "different"]
    reason: str


def load_adjudication(path: Path | None = None) -> dict[str, Adjudication]:
    """The verdicts recorded in `benchmarks/data/qqp_adjudication.jsonl` (or `path`), by pair
    key. A line whose verdict is still empty (a template the benchmark wrote for a reader to
    fill in) is not a verdict yet and is skipped."""
    path = path or ADJUDICATION_FILE
    out: dict[str, Adjudication] = {}
    if not path.exists():
        return out
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if not r["verdict"]:
                    continue
                if r["verdict"] not in ("same", "different"):
                    raise ValueError(f"{path}: verdict {r['verdict']!r} of {r['key']} is neither 'same' nor 'different'")
                out[r["key"]] = Adjudication(
                    r["key"], r["split"], r["text_a"], r["text_b"], int(r["qqp_label"]), r["verdict"], r["reason"]
                )
    return out


def adjudicated_labels(
    pairs: list[Pair], served: np.ndarray, verdicts: dict[str, Adjudication]
) -> tuple[np.ndarray, int, list[int]]:
    """Labels with the verdicts applied to served pairs labelled different.

    Returns the labels (1 where QQP says duplicate, or where a served pair labelled different
    was judged the same question), how many served pairs a verdict decided, and the indices of
    served pairs labelled different that have no verdict yet (counted as wrong until judged).
    """
    labels = np.array([p.label for p in pairs])
    judged = 0
    missing: list[int] = []
    for i in np.flatnonzero(served & (labels == 0)):
        v = verdicts.get(pair_key(pairs[i].text_a, pairs[i].text_b))
        if v is None:
            missing.append(int(i))
            continue
        judged += 1
        labels[i] = int(v.verdict == "same")
    return labels, judged, missing
