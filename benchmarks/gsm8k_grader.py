"""Does thrifty's numeric grader agree with GSM8K's own correctness labels?

Grades the recorded answers of two models (RouteLLM's GSM8K responses: Mixtral-8x7B and
GPT-4-1106) against the gold answers (`#### N`) with `thrifty.evals.graders` numeric grader
and compares each verdict with the dataset's True/False label. Prints the agreement per
model and every disagreement (gold number, extracted number, label, the answer's tail).

    PYTHONPATH=src python benchmarks/gsm8k_grader.py [--data ../shared/data/routing]

The answers are read from the CSV directly; when the replay provider
(`thrifty.providers.replay`) is installed, `--replay` sends every question through an
in-process gateway whose models replay the recorded answers, and grades what comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from pathlib import Path

from thrifty.evals.graders import extract_number, grade

MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")


def default_data_dir() -> Path:
    root = Path(__file__).resolve().parent.parent
    for cand in (root.parent / "shared" / "data" / "routing", root.parent.parent / "shared" / "data" / "routing"):
        if cand.exists():
            return cand
    return root.parent / "shared" / "data" / "routing"


def load(data: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with (data / "routellm_gsm8k_responses.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    gold = {}
    with (data / "routellm_gsm8k_test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            gold[item["question"]] = item["answer"]
    return rows, gold


async def responses_via_replay(rows: list[dict[str, str]], data: Path) -> dict[str, list[str]]:
    """Ask an in-process gateway whose two models replay the recorded answers."""
    from thrifty.config import parse_config
    from thrifty.evals.runner import GatewayTarget
    from thrifty.evals.sets import parse_item

    csv_path = data / "routellm_gsm8k_responses.csv"
    models = "\n".join(
        f"  - name: {m.split('/')[-1]}\n    provider: replay\n"
        f"    options: {{dataset: {json.dumps(str(csv_path))}, prompt_column: prompt, response_column: {json.dumps(m + '_response')}}}"
        for m in MODELS
    )
    config = parse_config(f'store: "sqlite:///:memory:"\nmodels:\n{models}\n', source="gsm8k-replay")
    items = [parse_item({"id": str(i), "prompt": r["prompt"], "grader": {"type": "regex", "pattern": ""}}, i)
             for i, r in enumerate(rows)]  # fmt: skip
    out: dict[str, list[str]] = {}
    sem = asyncio.Semaphore(32)
    async with GatewayTarget(config, "replay") as target:
        for m in MODELS:
            name = m.split("/")[-1]

            async def one(item: object, name: str = name) -> str:
                async with sem:
                    answer = await target.ask(item, name)  # type: ignore[arg-type]
                    if answer.error:
                        raise RuntimeError(f"replay failed: {answer.error}")
                    return answer.text

            out[m] = await asyncio.gather(*(one(it) for it in items))
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--replay", action="store_true", help="go through the replay provider")
    args = parser.parse_args()
    rows, gold = load(args.data)
    started = time.perf_counter()
    if args.replay:
        answers = await responses_via_replay(rows, args.data)
        source = "replay provider through an in-process gateway"
    else:
        answers = {m: [r[f"{m}_response"] for r in rows] for m in MODELS}
        source = "the CSV, read directly"
    print(f"GSM8K test: {len(rows)} questions; answers from {source}; grader: numeric (abs_tol 1e-6)\n")
    worst = 1.0
    for m in MODELS:
        agree = passed = labelled = 0
        disagreements = []
        for i, (row, text) in enumerate(zip(rows, answers[m], strict=True)):
            gold_answer = gold[row["prompt"]]
            g = await grade({"type": "numeric"}, text, gold_answer)
            label = row[m].strip() == "True"
            passed += g.passed
            labelled += label
            if g.passed == label:
                agree += 1
            else:
                disagreements.append((i, extract_number(gold_answer), g.value, label, text))
        share = agree / len(rows)
        worst = min(worst, share)
        print(f"{m}: grader passes {passed} ({passed / len(rows):.1%}), dataset labels {labelled} correct "
              f"({labelled / len(rows):.1%}); agreement {agree}/{len(rows)} = {share:.2%}")  # fmt: skip
        print(f"  disagreements ({len(disagreements)}):")
        for i, want, got, label, text in disagreements:
            tail = " ".join(text.split())[-110:]
            print(f"  #{i:<5} gold {want:g}  extracted {got if got is None else format(got, 'g')}  "
                  f"label {label!s:<5}  ...{tail}")  # fmt: skip
        print()
    print(f"minimum agreement {worst:.2%} (target >= 95%) in {time.perf_counter() - started:.1f}s")
    return 0 if worst >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
