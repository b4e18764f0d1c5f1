"""Does thrifty's numeric grader agree with GSM8K's own correctness labels?

Grades the recorded answers of two models (RouteLLM's GSM8K responses: Mixtral-8x7B and
GPT-4-1106) against the gold answers (`#### N`) with `thrifty.evals.graders` numeric grader
and compares each verdict with the dataset's True/False label. Prints the agreement per
model and every disagreement (gold number, extracted number, label, the answer's tail).

    PYTHONPATH=src python benchmarks/gsm8k_grader.py [--data ../shared/data/routing]

When the replay provider (`thrifty.providers.replay`) is installed, every question goes
through an in-process gateway whose two models replay the recorded answers (the eval runner,
as `thrifty eval run --all-models` does) and what comes back is graded; the script checks
that this gives the same verdict as grading the CSV's text. Otherwise (or with `--direct`)
it grades the CSV's answers directly.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import json
import sys
import tempfile
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


def replay_available() -> bool:
    try:
        return importlib.util.find_spec("thrifty.providers.replay") is not None and (
            importlib.util.find_spec("thrifty.routing.datasets") is not None
        )
    except ModuleNotFoundError:
        return False


async def grades_via_replay(rows: list[dict[str, str]], gold: dict[str, str], data: Path) -> dict[str, list[bool]]:
    """Run the set as an eval through an in-process gateway whose models replay the recorded
    answers (`thrifty eval run --all-models` in code), grading each with the numeric grader."""
    from thrifty.config import parse_config  # noqa: I001 (thrifty.routing lands from another branch)
    from thrifty.evals.runner import GatewayTarget, run_set
    from thrifty.evals.sets import parse_item
    from thrifty.routing.datasets import convert_routellm_gsm8k
    from thrifty.routing.labeled import write_labeled

    conversion = convert_routellm_gsm8k(data / "routellm_gsm8k_responses.csv")
    if conversion.problems:
        print("conversion problems:\n" + conversion.report())
    with tempfile.TemporaryDirectory() as tmp:
        labeled = Path(tmp) / "gsm8k_labeled.jsonl"
        write_labeled(conversion.examples, labeled)
        models = "\n".join(
            f"  - name: {m.split('/')[-1]}\n    provider: replay\n    model: {json.dumps(m)}\n"
            f"    options: {{dataset: {json.dumps(str(labeled))}}}"
            for m in MODELS
        )
        config = parse_config(f'store: "sqlite:///:memory:"\nmodels:\n{models}\n', source="gsm8k-replay")
        items = [
            parse_item({"id": str(i), "prompt": r["prompt"], "expected": gold[r["prompt"]], "grader": {"type": "numeric"}}, i)
            for i, r in enumerate(rows)
        ]
        out: dict[str, list[bool]] = {}
        async with GatewayTarget(config, "replay") as target:
            for m in MODELS:
                run = await run_set(items, target, concurrency=32, model=m.split("/")[-1], progress=False)
                errors = [r.answer.error for r in run.results.values() if r.answer.error]
                if errors:
                    raise SystemExit(f"{m}: {len(errors)} replay errors, first: {errors[0]}")
                out[m] = [run.results[str(i)].grade.passed for i in range(len(rows))]
                print(f"  replayed {m}: {len(run.results)} answers, recorded cost ${run.summary().cost_total:.4f}")
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--direct", action="store_true", help="read the answers from the CSV, not through replay")
    args = parser.parse_args()
    rows, gold = load(args.data)
    started = time.perf_counter()
    answers = {m: [r[f"{m}_response"] for r in rows] for m in MODELS}
    via_replay = not args.direct and replay_available()
    source = "the replay provider through an in-process gateway (eval runner)" if via_replay else (
        "the CSV, read directly" + ("" if args.direct else " (thrifty.providers.replay is not installed)"))
    print(f"GSM8K test: {len(rows)} questions; answers from {source}; grader: numeric (abs_tol 1e-6)")
    replayed = await grades_via_replay(rows, gold, args.data) if via_replay else None
    print()
    worst = 1.0
    for m in MODELS:
        agree = passed = labelled = 0
        disagreements = []
        for i, (row, text) in enumerate(zip(rows, answers[m], strict=True)):
            gold_answer = gold[row["prompt"]]
            g = await grade({"type": "numeric"}, text, gold_answer)
            if replayed is not None and replayed[m][i] != g.passed:
                raise SystemExit(f"{m} #{i}: the replayed answer graded differently from the recorded one")
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
