"""The eval gate on real answers: would swapping GPT-4 for Mixtral on GSM8K pass a 1-point gate?

Builds an eval set from the GSM8K test questions and gold answers (numeric grader), and two
configs whose only model replays the recorded answers of GPT-4-1106 (A) and Mixtral-8x7B (B)
through the replay provider. Then runs `thrifty eval gate --max-drop 1.0` on them (and A
against itself) with the real CLI, printing its report and exit status.

    PYTHONPATH=src python benchmarks/eval_gate_gsm8k.py [--data ../shared/data/routing] [--limit N]

Needs the replay provider (`thrifty.providers.replay`, from the routing work).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gsm8k_grader import default_data_dir, load, replay_available

A_MODEL, B_MODEL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--limit", type=int, default=0, help="a random sample of this many questions (0 = all)")
    args = parser.parse_args()
    if not replay_available():
        print("the replay provider (thrifty.providers.replay) is not installed; nothing to run")
        return 2
    from thrifty.routing.datasets import convert_routellm_gsm8k
    from thrifty.routing.labeled import write_labeled

    rows, gold = load(args.data)
    if args.limit:
        rows = random.Random(0).sample(rows, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        labeled = t / "labeled.jsonl"
        write_labeled(convert_routellm_gsm8k(args.data / "routellm_gsm8k_responses.csv").examples, labeled)
        with (t / "gsm8k.jsonl").open("w", encoding="utf-8") as f:
            for i, r in enumerate(rows):
                item = {"id": f"gsm8k-{i}", "prompt": r["prompt"], "expected": gold[r["prompt"]], "grader": {"type": "numeric"}}
                f.write(json.dumps(item) + "\n")
        for name, model in (("a.yaml", A_MODEL), ("b.yaml", B_MODEL)):
            (t / name).write_text(
                f'store: "sqlite:///{t / "ledger.db"}"\nmodels:\n  - name: answerer\n    provider: replay\n'
                f"    model: {json.dumps(model)}\n    options: {{dataset: {json.dumps(str(labeled))}}}\n",
                encoding="utf-8",
            )
        print(f"{len(rows)} GSM8K questions; A = {A_MODEL}, B = {B_MODEL} (recorded answers via replay)\n")
        for label, against in (("A against itself", "a.yaml"), ("A against B", "b.yaml")):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "thrifty.cli", "eval", "gate", "--set", str(t / "gsm8k.jsonl"),
                 "--config", str(t / "a.yaml"), "--against", str(t / against), "--max-drop", "1.0",
                 "--cache", str(t / "cache.sqlite"), "--max-diffs", "5", "-q"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            print(f"== {label}: thrifty eval gate exit status {done.returncode} ({time.perf_counter() - started:.1f}s)")
            print(done.stdout.rstrip())
            if done.stderr.strip():
                print(done.stderr.rstrip()[-2000:])
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
