"""Converters from public routing datasets to the labeled format (`thrifty.routing.labeled`).

- RouterBench (`mbpp_train.csv`, ...): per-model 0/1 correctness, response and `total_cost`.
- RouteLLM MMLU (`mmlu_<subject>.csv`, a file or a folder of them): per-model True/False.
- RouteLLM GSM8K (`routellm_gsm8k_responses.csv`): correctness and both models' responses.
- RouteLLM MT-Bench (`routellm_mtbench_judgements.jsonl` + the questions file beside it):
  GPT-4 judge scores 1..10, scaled to 0..1.

RouteLLM files carry no costs, so a call's cost is estimated from its token counts (cl100k
BPE) at per-model prices (`--price MODEL=IN,OUT`, USD per 1M tokens; list prices of
November 2023 for the two RouteLLM models by default). A row that cannot be converted is
reported with its line number; the good rows are still written.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from thrifty.routing.labeled import Candidate, Example

#: USD per 1M input / output tokens, used only where a dataset records no cost.
#: gpt-4-1106-preview: OpenAI list price; Mixtral-8x7B-Instruct: Together/Anyscale list price.
DEFAULT_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4-1106-preview": (Decimal("10"), Decimal("30")),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (Decimal("0.6"), Decimal("0.6")),
}

#: Output tokens assumed for an MMLU answer (RouteLLM's MMLU prompts end in "Answer:").
MMLU_OUTPUT_TOKENS = 1


@dataclass
class Conversion:
    """What a converter produced: the examples and the rows it could not use."""

    examples: list[Example] = field(default_factory=list)
    problems: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, message)

    def report(self, limit: int = 20) -> str:
        lines = [f"{f}:{n}: {msg}" for f, n, msg in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        return "\n".join(lines)


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int] | None:
    try:
        import bpe_openai

        enc = bpe_openai.cl100k_base()
        return lambda text: len(enc.encode(text))
    except Exception:  # noqa: BLE001 - any failure falls back to the character estimate
        return None


def count_tokens(text: str) -> int:
    """cl100k token count, or chars/4 where the tokenizer is not installed."""
    enc = _encoder()
    if enc is not None:
        return enc(text)
    return max(1, (len(text) + 3) // 4)


def estimated_cost(
    prices: dict[str, tuple[Decimal, Decimal]], model: str, input_tokens: int, output_tokens: int
) -> Decimal:
    try:
        pin, pout = prices[model]
    except KeyError:
        raise ValueError(
            f"no price for {model!r}; give one with --price '{model}=IN,OUT' (USD per 1M tokens)"
        ) from None
    return (pin * input_tokens + pout * output_tokens) / Decimal(1_000_000)


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows with the line number each starts on (quoted fields may span lines)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        _ = reader.fieldnames  # reads the header line
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def _bool_quality(value: str) -> float:
    v = value.strip().lower()
    if v in ("true", "1", "1.0"):
        return 1.0
    if v in ("false", "0", "0.0"):
        return 0.0
    raise ValueError(f"correctness {value!r} is not True/False or 0/1")


def _unlist(value: str) -> str:
    """RouterBench stores prompts and responses as Python list literals of one string."""
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        try:
            parsed = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            # A raw newline inside the literal: take the text between the quotes as it is.
            if len(v) >= 4 and v[1] in "'\"" and v[-2] == v[1]:
                return v[2:-2]
            return value
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            return "\n".join(parsed)
    return value


def convert_routerbench(path: str | Path) -> Conversion:
    path = Path(path)
    out = Conversion()
    models: list[str] | None = None
    for line, row in _csv_rows(path):
        if models is None:
            models = [c[: -len("|total_cost")] for c in row if c.endswith("|total_cost")]
            if not models:
                out.problems.append((str(path), 1, "no '<model>|total_cost' columns: not a RouterBench file"))
                return out
        try:
            prompt = _unlist(row["prompt"])
            if not prompt.strip():
                raise ValueError("empty prompt")
            cands: dict[str, Candidate] = {}
            for m in models:
                q = float(row[m])
                if not 0.0 <= q <= 1.0:
                    raise ValueError(f"{m}: quality {q} outside 0..1")
                cost = Decimal(row[f"{m}|total_cost"].strip())
                resp = row.get(f"{m}|model_response")
                cands[m] = Candidate(q, cost, _unlist(resp) if resp is not None else None)
            ident = row.get("sample_id") or f"{path.stem}.{line}"
            meta = {"source": "routerbench", "eval": row.get("eval_name", "")}
            out.examples.append(Example(ident, cands, prompt=prompt, meta=meta))
        except (KeyError, ValueError, ArithmeticError) as exc:
            out.problems.append((str(path), line, f"{type(exc).__name__}: {exc}"))
    return out


def convert_routellm_mmlu(
    path: str | Path,
    prices: dict[str, tuple[Decimal, Decimal]] | None = None,
    output_tokens: int = MMLU_OUTPUT_TOKENS,
) -> Conversion:
    prices = {**DEFAULT_PRICES, **(prices or {})}
    path = Path(path)
    files = sorted(path.glob("mmlu_*.csv")) if path.is_dir() else [path]
    out = Conversion()
    seen: set[str] = set()
    for file in files:
        subject = file.stem.removeprefix("mmlu_")
        for line, row in _csv_rows(file):
            try:
                prompt = row["prompt"]
                if not prompt or not prompt.strip():
                    raise ValueError("empty prompt")
                models = [c for c in row if c != "prompt"]
                if not models:
                    raise ValueError("no model columns")
                n_in = count_tokens(prompt)
                cands = {
                    m: Candidate(_bool_quality(row[m]), estimated_cost(prices, m, n_in, output_tokens))
                    for m in models
                }
                ident = f"mmlu.{subject}.{hashlib.sha256(prompt.encode()).hexdigest()[:12]}"
                if ident in seen:  # the same question twice in a subject: keep the first
                    continue
                seen.add(ident)
                out.examples.append(
                    Example(ident, cands, prompt=prompt, meta={"source": "routellm-mmlu", "subject": subject})
                )
            except (KeyError, ValueError, AttributeError) as exc:
                out.problems.append((str(file), line, f"{type(exc).__name__}: {exc}"))
    return out


def convert_routellm_gsm8k(
    path: str | Path, prices: dict[str, tuple[Decimal, Decimal]] | None = None
) -> Conversion:
    prices = {**DEFAULT_PRICES, **(prices or {})}
    path = Path(path)
    out = Conversion()
    for line, row in _csv_rows(path):
        try:
            prompt = row["prompt"]
            if not prompt or not prompt.strip():
                raise ValueError("empty prompt")
            models = [c for c in row if c != "prompt" and not c.endswith("_response")]
            n_in = count_tokens(prompt)
            cands: dict[str, Candidate] = {}
            for m in models:
                resp = row.get(f"{m}_response") or ""
                cost = estimated_cost(prices, m, n_in, count_tokens(resp))
                cands[m] = Candidate(_bool_quality(row[m]), cost, resp)
            ident = f"gsm8k.{line}"
            out.examples.append(Example(ident, cands, prompt=prompt, meta={"source": "routellm-gsm8k"}))
        except (KeyError, ValueError, AttributeError) as exc:
            out.problems.append((str(path), line, f"{type(exc).__name__}: {exc}"))
    return out


_ANSWER_START = "[The Start of Assistant's Answer]"
_ANSWER_END = "[The End of Assistant's Answer]"


def _judged_answer(user_prompt: str) -> str | None:
    start = user_prompt.find(_ANSWER_START)
    end = user_prompt.find(_ANSWER_END)
    if start < 0 or end < start:
        return None
    return user_prompt[start + len(_ANSWER_START) : end].strip()


def convert_routellm_mtbench(
    path: str | Path,
    questions: str | Path | None = None,
    prices: dict[str, tuple[Decimal, Decimal]] | None = None,
) -> Conversion:
    """One example per MT-Bench question, scored on its first turn (score / 10)."""
    prices = {**DEFAULT_PRICES, **(prices or {})}
    path = Path(path)
    qpath = Path(questions) if questions else path.with_name("routellm_mtbench_questions.jsonl")
    out = Conversion()
    turns: dict[int, dict[str, Any]] = {}
    with qpath.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
                turns[int(q["question_id"])] = q
            except (ValueError, KeyError, TypeError) as exc:
                out.problems.append((str(qpath), n, f"{type(exc).__name__}: {exc}"))
    scores: dict[int, dict[str, tuple[float, str | None]]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
                if int(j.get("turn", 1)) != 1:
                    continue
                score = float(j["score"])
                if not 1 <= score <= 10:
                    raise ValueError(f"score {score} outside 1..10 (a failed judgement)")
                scores.setdefault(int(j["question_id"]), {})[str(j["model"])] = (
                    score / 10.0,
                    _judged_answer(str(j.get("user_prompt", ""))),
                )
            except (ValueError, KeyError, TypeError) as exc:
                out.problems.append((str(path), n, f"{type(exc).__name__}: {exc}"))
    for qid in sorted(scores):
        q = turns.get(qid)
        if q is None:
            out.problems.append((str(path), 0, f"question {qid} is not in {qpath}"))
            continue
        prompt = str(q["turns"][0])
        n_in = count_tokens(prompt)
        try:
            cands = {
                m: Candidate(quality, estimated_cost(prices, m, n_in, count_tokens(resp or "")), resp)
                for m, (quality, resp) in scores[qid].items()
            }
        except ValueError as exc:
            out.problems.append((str(path), 0, f"question {qid}: {exc}"))
            continue
        meta = {"source": "routellm-mtbench", "category": q.get("category", "")}
        out.examples.append(
            Example(f"mtbench.{qid}", cands, messages=[{"role": "user", "content": prompt}], meta=meta)
        )
    return out


FORMATS = ("routerbench", "routellm-mmlu", "routellm-gsm8k", "routellm-mtbench")


def convert(
    fmt: str, path: str | Path, prices: dict[str, tuple[Decimal, Decimal]] | None = None
) -> Conversion:
    if fmt == "routerbench":
        return convert_routerbench(path)
    if fmt == "routellm-mmlu":
        return convert_routellm_mmlu(path, prices)
    if fmt == "routellm-gsm8k":
        return convert_routellm_gsm8k(path, prices)
    if fmt == "routellm-mtbench":
        return convert_routellm_mtbench(path, prices=prices)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def parse_price(spec: str) -> tuple[str, tuple[Decimal, Decimal]]:
    """'MODEL=IN,OUT' (USD per 1M tokens) -> (model, (in, out))."""
    model, sep, rest = spec.rpartition("=")
    parts = rest.split(",")
    if not sep or not model or len(parts) != 2:
        raise ValueError(f"price {spec!r}: expected MODEL=IN,OUT in USD per 1M tokens")
    return model, (Decimal(parts[0].strip()), Decimal(parts[1].strip()))
