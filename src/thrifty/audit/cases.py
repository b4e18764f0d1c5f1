"""Logs that test the audit's near-duplicate search, rebuilt from public data in ../shared/data.

Three cases, each a list of OpenAI-format log lines (`thrifty.audit.synth`):

- `few_shot_case`: distinct GSM8K questions, each behind the same block of five solved GSM8K
  examples (question and worked answer), plus exact repeats;
- `template_case`: distinct MMLU or GSM8K questions behind the same long instruction template,
  plus exact repeats;
- `paraphrase_case`: GPTCache's paraphrase pairs (`cache/gptcache_mock_data.json`), the first
  question of each pair and later the second.

In the first two no question is a near-duplicate of another, and a correct audit flags
(almost) none; in the third every second question is one, and a correct audit finds them.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

from thrifty.audit.synth import paraphrase_lines, templated_lines

__all__ = [
    "INSTRUCTIONS",
    "find_shared_data",
    "few_shot_case",
    "gptcache_pairs",
    "gsm8k_items",
    "mmlu_questions",
    "paraphrase_case",
    "template_case",
]

#: A long instruction template of the kind products put in front of every question.
INSTRUCTIONS = """You are the study assistant of an online learning platform for secondary-school and first-year university students.
Read the student's question below carefully before you answer it.
Work through the problem step by step, and show each intermediate result on its own line so that the student can follow the reasoning.
Use plain language; when a technical term is unavoidable, define it in one short sentence the first time it appears.
Never invent facts, quantities or sources. If the question cannot be answered from general knowledge and the information it gives, say so and explain what is missing.
When the question offers lettered options, consider each option in turn and say briefly why it is right or wrong before you choose.
When the question asks for a number, give the units, round only at the end, and check the result against a quick estimate.
Keep the whole answer under two hundred words unless the question explicitly asks for more detail.
Do not address the student by name, do not mention these instructions, and do not ask follow-up questions.
Finish with a line of the form "Final answer: X", where X is the letter of the chosen option or the number asked for.

Student's question:
"""


def find_shared_data(start: Path | None = None) -> Path | None:
    """`shared/data` beside the project root or beside one of its parents."""
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "data"
        if (candidate / "routing").is_dir():
            return candidate
    return None


def gsm8k_items(data: Path) -> list[tuple[str, str]]:
    """(question, worked answer) of the GSM8K test split, in file order."""
    out = []
    with (data / "routing" / "routellm_gsm8k_test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out.append((str(row["question"]).strip(), str(row["answer"]).strip()))
    return out


def mmlu_questions(data: Path, n: int, seed: int = 0) -> list[str]:
    """`n` distinct MMLU prompts (question and options), drawn at random across subjects."""
    csv.field_size_limit(sys.maxsize)
    prompts: set[str] = set()
    for path in sorted((data / "routing" / "routellm_mmlu").glob("mmlu_*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            prompts.update(row["prompt"].strip() for row in csv.DictReader(f) if row.get("prompt"))
    return random.Random(seed).sample(sorted(prompts), n)


def gptcache_pairs(data: Path) -> list[tuple[str, str]]:
    """GPTCache's paraphrase pairs (origin, similar)."""
    rows = json.loads((data / "cache" / "gptcache_mock_data.json").read_text(encoding="utf-8"))
    return [(str(r["origin"]).strip(), str(r["similar"]).strip()) for r in rows]


def few_shot_case(data: Path, n: int = 300, repeats: int = 60, seed: int = 0) -> list[bytes]:
    """`n` distinct GSM8K questions, each behind the same five solved examples, + exact repeats."""
    items = gsm8k_items(data)
    shots, rest = items[:5], items[5:]
    block = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots)
    questions = [q for q, _ in random.Random(seed).sample(rest, n)]
    return list(templated_lines([f"Question: {q}" for q in questions], block, repeats, seed, suffix="\nAnswer:"))


def template_case(
    data: Path, source: str = "mmlu", n: int = 300, repeats: int = 60, seed: int = 0
) -> list[bytes]:
    """`n` distinct MMLU (or GSM8K) questions behind the same instruction template, + repeats."""
    if source == "mmlu":
        questions = mmlu_questions(data, n, seed)
    else:
        questions = [q for q, _ in random.Random(seed).sample(gsm8k_items(data), n)]
    return list(templated_lines(questions, INSTRUCTIONS, repeats, seed))


def paraphrase_case(data: Path, n: int | None = None) -> list[bytes]:
    """The first `n` (default all) GPTCache paraphrase pairs as log lines."""
    pairs = gptcache_pairs(data)
    return list(paraphrase_lines(pairs[:n] if n else pairs))
