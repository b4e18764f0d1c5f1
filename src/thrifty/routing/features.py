"""Prompt features for the learned router and the cascade scorer.

The shipped MiniLM embedding says what a prompt is about; a handful of cheap structural
features say what kind of work it asks for (code, arithmetic, multiple choice, long context),
which topic alone misses. The feature spec is stored in the router artifact so that serving
computes exactly the features the model was trained on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

FEATURE_VERSION = 1

_WH = re.compile(r"^\s*(what|why|how|which|who|whom|when|where|is|are|does|do|can|should)\b", re.I)
_OPTION = re.compile(r"^\s*\(?[A-Ea-e][.)]\s+\S", re.M)
_FENCE = re.compile(r"```")
_CODE_HINT = re.compile(r"\b(def|class|function|return|import|SELECT|#include|public|const|var|let)\b")
_CODE_TASK = re.compile(
    r"\b(write|implement|code|program|function|script|python|javascript|sql|regex)\b", re.I
)
_MATH = re.compile(r"[=+\-*/^%<>]|\b(sum|product|equation|solve|integral|probability|percent)\b", re.I)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_EXPLAIN = re.compile(r"\b(explain|describe|discuss|compare|analy[sz]e|why|essay|story|poem|blog)\b", re.I)
_CONSTRAINT = re.compile(r"\b(must|exactly|at least|at most|only|without|step by step|json|format)\b", re.I)

#: Names of the structural features, in column order.
STRUCTURE_FEATURES = (
    "log_chars",
    "log_words",
    "log_lines",
    "question_mark",
    "wh_question",
    "options",
    "code_fence",
    "code_hint",
    "code_task",
    "math_density",
    "number_density",
    "explain",
    "constraints",
    "upper_ratio",
    "non_ascii_ratio",
)


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model uses; stored in the artifact and checked at load time."""

    version: int = FEATURE_VERSION
    embedding: str | None = "all-MiniLM-L6-v2"
    structure: tuple[str, ...] = STRUCTURE_FEATURES

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["structure"] = list(self.structure)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> FeatureSpec:
        version = int(str(d.get("version", 0)))
        if version != FEATURE_VERSION:
            raise ValueError(
                f"feature spec version {version} is not supported (this thrifty reads {FEATURE_VERSION})"
            )
        raw = d.get("structure") or ()
        structure = tuple(str(s) for s in raw) if isinstance(raw, list | tuple) else ()
        unknown = [s for s in structure if s not in STRUCTURE_FEATURES]
        if unknown:
            raise ValueError(f"unknown structural features: {', '.join(unknown)}")
        emb = d.get("embedding")
        return cls(version, str(emb) if emb else None, structure)


def structure_vector(text: str, names: Sequence[str] = STRUCTURE_FEATURES) -> list[float]:
    chars = len(text)
    words = len(text.split())
    per_char = 1.0 / max(chars, 1)
    values: dict[str, Callable[[], float]] = {
        "log_chars": lambda: math.log1p(chars),
        "log_words": lambda: math.log1p(words),
        "log_lines": lambda: math.log1p(text.count("\n")),
        "question_mark": lambda: float("?" in text),
        "wh_question": lambda: float(bool(_WH.search(text))),
        "options": lambda: min(len(_OPTION.findall(text)), 6) / 6.0,
        "code_fence": lambda: float(bool(_FENCE.search(text))),
        "code_hint": lambda: min(len(_CODE_HINT.findall(text)), 10) / 10.0,
        "code_task": lambda: float(bool(_CODE_TASK.search(text))),
        "math_density": lambda: min(len(_MATH.findall(text)) * per_char * 20, 1.0),
        "number_density": lambda: min(len(_NUMBER.findall(text)) * per_char * 20, 1.0),
        "explain": lambda: float(bool(_EXPLAIN.search(text))),
        "constraints": lambda: min(len(_CONSTRAINT.findall(text)), 5) / 5.0,
        "upper_ratio": lambda: sum(c.isupper() for c in text) * per_char,
        "non_ascii_ratio": lambda: sum(ord(c) > 127 for c in text) * per_char,
    }
    return [values[n]() for n in names]


Embed = Callable[[Sequence[str]], np.ndarray]


def default_embed(texts: Sequence[str]) -> np.ndarray:
    from thrifty.embed import shared_embedder

    return shared_embedder().embed(list(texts))


def featurize(
    texts: Sequence[str], spec: FeatureSpec | None = None, embed: Embed | None = None
) -> np.ndarray:
    """A (len(texts), d) float32 matrix: structural features, then the embedding if the spec has one."""
    spec = spec or FeatureSpec()
    struct = np.array([structure_vector(t, spec.structure) for t in texts], dtype=np.float32).reshape(
        len(texts), -1
    )
    if spec.embedding is None:
        return struct
    vecs = (embed or default_embed)(texts)
    return np.hstack([struct, np.asarray(vecs, dtype=np.float32)])


def pair_text(prompt: str, answer: str) -> str:
    """What the cascade scorer embeds for a (prompt, answer) pair."""
    return f"{prompt}\n\n### Answer\n{answer}"
