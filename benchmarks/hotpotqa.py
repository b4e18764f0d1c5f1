"""Read HotpotQA examples in any of the shapes they are published in, for the multi-hop benchmark.

`benchmarks/compression.py` scores the compressor on `data/hotpotqa_multihop.json.xz` (made by
`scripts/derive_multihop_eval.py`); with `--multihop-data FILE` it scores any other file of
HotpotQA examples the same way, so that a held-out set (the first 100 questions of
`hotpot_dev_distractor_v1.json`, say) is one command. This module reads them all:

- the committed file: `{"examples": [...]}` with a `split` per example;
- HotpotQA's own JSON array (`hotpot_dev_distractor_v1.json`) or JSON lines;
- any of them compressed with xz (`.xz`);
- supporting facts as `[title, index]` or `[title, [indices]]`; the context as `[title,
  sentences]` pairs, a Python literal of them (AMOR's files), or Hugging Face's column shape
  (`{"title": [...], "sentences": [...]}`).

An example is usable when it has 10 paragraphs with distinct titles and its supporting facts
name two of them by valid sentence index: otherwise "both hops kept" means nothing.
"""

from __future__ import annotations

import ast
import json
import lzma
from pathlib import Path
from typing import Any

__all__ = ["context", "facts", "load_examples", "read_rows", "usable"]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON array, JSON lines, or `{"examples": [...]}`, optionally xz-compressed."""
    raw = path.read_bytes()
    if path.suffix == ".xz":
        raw = lzma.decompress(raw)
    text = raw.decode("utf-8").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSON lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = data.get("examples", [data])
    return list(data)


def facts(row: dict[str, Any]) -> list[tuple[str, int]]:
    """Supporting facts as (title, sentence index), whichever of the two shapes the row has."""
    out: list[tuple[str, int]] = []
    for fact in row["supporting_facts"]:
        title, ids = fact[0], fact[1]
        for i in ids if isinstance(ids, list) else [ids]:
            out.append((str(title), int(i)))
    return out


def context(row: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The paragraphs as (title, sentences)."""
    raw = row["context"]
    if isinstance(raw, str):  # AMOR's dev file stores it as a Python literal
        raw = ast.literal_eval(raw)
    if isinstance(raw, dict):  # Hugging Face's column shape
        raw = list(zip(raw["title"], raw["sentences"], strict=True))
    return [(str(t), [str(s) for s in sents]) for t, sents in raw]


def usable(row: dict[str, Any]) -> dict[str, Any] | None:
    """The example in the benchmark's shape, or None when it cannot test two hops."""
    paragraphs = context(row)
    if len(paragraphs) != 10:
        return None
    by_title = dict(paragraphs)
    sp = sorted(set(facts(row)))
    gold = {t for t, _ in sp}
    if len(gold) != 2 or any(t not in by_title or i >= len(by_title[t]) for t, i in sp):
        return None
    if len(by_title) != len(paragraphs):  # a repeated title makes "the" gold paragraph ambiguous
        return None
    return {
        "id": row.get("_id", row.get("id", "")),
        "question": row["question"],
        "answer": row["answer"],
        "type": row.get("type", ""),
        "supporting_facts": [[t, i] for t, i in sp],
        "context": [[t, s] for t, s in paragraphs],
    }


def load_examples(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The usable examples of a file, each keeping its `split` if it has one; and how many rows
    were left out as unusable."""
    rows = read_rows(path)
    out = []
    for row in rows:
        ex = usable(row)
        if ex is None:
            continue
        if "split" in row:
            ex["split"] = row["split"]
        out.append(ex)
    return out, len(rows) - len(out)
