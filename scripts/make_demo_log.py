#!/usr/bin/env python
"""Build a realistic OpenAI-format JSONL request log for `thrifty audit` demos and tests.

Source: RouterBench's MBPP subset (../shared/data/routing/routerbench/mbpp_*.csv): real
prompts, each model's real response text, its real cost in USD and whether it was correct.
On top of that the script adds what production traffic has and a benchmark does not:

- a mix of models, keys, routes and features, spread over `--days` days with a daily rhythm;
- a long system prompt on one feature (priced on top of the dataset's cost, at each model's
  list input price from when RouterBench was recorded), a short one on the others;
- exact repeats (popular prompts asked again), paraphrases of earlier prompts, client retries
  after a 429/500, double submits, and calls truncated by a low `max_tokens`;
- agent tasks (`tags.task`) with their outcome lines {"task", "success"} taken from the
  dataset's correctness labels, so that cost per resolved task can be reported;
- on each unmodified request, `labels.correct`: RouterBench's verdict for every model, so
  that `thrifty replay` can report quality as well as cost.

Usage: python scripts/make_demo_log.py --out demo.jsonl [--requests 4000] [--bad 0] [--seed 1]
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import random
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "routing" / "routerbench"
DEFAULT_DATA = Path("/work/shared/data/routing/routerbench")

#: Dataset model -> (name as an OpenAI-format log would show it, share of traffic,
#: list input price USD per 1M tokens at the time, ms per output token).
MODELS = {
    "gpt-4-1106-preview": ("gpt-4-1106-preview", 0.42, 10.0, 28.0),
    "gpt-3.5-turbo-1106": ("gpt-3.5-turbo-1106", 0.28, 1.0, 9.0),
    "claude-v2": ("claude-2.0", 0.14, 8.0, 22.0),
    "claude-instant-v1": ("claude-instant-1.2", 0.10, 0.8, 8.0),
    "mistralai/mixtral-8x7b-chat": ("mixtral-8x7b-instruct", 0.06, 0.6, 7.0),
}

LONG_SYSTEM = (
    "You are CodePilot, the coding assistant inside the Acme developer portal. Follow the house style. "
    + " ".join(
        f"Rule {i}: {rule}"
        for i, rule in enumerate(
            [
                "Write idiomatic Python 3.11 with type hints on every public function.",
                "Prefer the standard library; do not import third-party packages unless asked.",
                "Explain the approach in at most three sentences before the code.",
                "Include a short docstring that states inputs, outputs and edge cases.",
                "Never print inside library functions; return values instead.",
                "Handle empty inputs and invalid arguments explicitly and raise ValueError with a clear message.",
                "Use descriptive variable names; avoid single letters except for loop indices.",
                "Add two or three doctest examples that cover a normal case and an edge case.",
                "Keep functions short; split helpers out when a function grows past twenty lines.",
                "Do not use global state, and do not mutate arguments unless the name says so.",
            ]
            * 9,
            start=1,
        )
    )
)
SHORT_SYSTEM = "You are a helpful assistant that writes correct, concise Python."

PARAPHRASES = [
    lambda p: p.replace("Write a function to", "Can you write a function that will").rstrip(".") + "?",
    lambda p: p.replace("Write a python function to", "Please write a Python function to"),
    lambda p: "I need a Python function. " + p,
    lambda p: p.replace("Write a", "Create a").replace("write a", "create a"),
    lambda p: p.rstrip(".") + ", please.",
]


def load(data: Path) -> list[dict[str, Any]]:
    csv.field_size_limit(1 << 30)
    rows: list[dict[str, Any]] = []
    for name in ("mbpp_train.csv", "mbpp_test.csv"):
        with (data / name).open(newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                item: dict[str, Any] = {"id": r["sample_id"], "prompt": _first(r["prompt"]), "models": {}}
                for m in MODELS:
                    item["models"][m] = {
                        "response": _first(r[f"{m}|model_response"]),
                        "cost": float(r[f"{m}|total_cost"]),
                        "correct": float(r[m]) >= 0.5,
                    }
                rows.append(item)
    return rows


def _first(cell: str) -> str:
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell
    return str(value[0]) if isinstance(value, list) and value else str(value)


def tokens(text: str) -> int:
    return max(1, round(len(text) / 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", type=int, default=4000, help="base requests before repeats are added")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--bad", type=int, default=0, help="corrupt lines to mix in (to show the bad-line report)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default=str(DEFAULT_DATA if DEFAULT_DATA.exists() else DATA))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    items = load(Path(args.data))
    start = time.mktime((2026, 11, 1, 0, 0, 0, 0, 0, 0)) - time.timezone
    # Popularity: a few prompts are asked far more often than the rest (Zipf-like).
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(items))]
    order = items[:]
    rng.shuffle(order)
    lines: list[tuple[float, dict[str, Any]]] = []
    history: list[dict[str, Any]] = []
    keys = [("web-app", 0.55), ("ci-bot", 0.25), ("notebook", 0.20)]
    task_n = 0

    def when() -> float:
        day = rng.randrange(args.days)
        hour = rng.choices(range(24), weights=[1 + 4 * (8 <= h <= 18) for h in range(24)])[0]
        return start + day * 86400 + hour * 3600 + rng.random() * 3600

    def record(
        ts: float, item: dict[str, Any], model: str, key: str, feature: str, route: str, *,
        prompt: str | None = None, status: int = 200, max_tokens: int | None = None, task: str | None = None,
        temperature: float = 0.0,
    ) -> dict[str, Any]:  # fmt: skip
        name, _, in_price, ms_per_tok = MODELS[model]
        system = LONG_SYSTEM if feature == "codepilot" else SHORT_SYSTEM
        text = prompt or item["prompt"]
        req: dict[str, Any] = {
            "model": name,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            "temperature": temperature,
        }
        if max_tokens:
            req["max_tokens"] = max_tokens
        tags = {"route": route, "feature": feature, "key": key}
        if task:
            tags["task"] = task
        out: dict[str, Any] = {"timestamp": ts, "request": req, "tags": tags}
        if status != 200:
            out["status"] = status
            out["response"] = {"error": {"message": "rate limited" if status == 429 else "upstream error"}}
            out["cost"] = 0.0
            out["latency_ms"] = round(rng.uniform(80, 900), 1)
            return out
        answer = item["models"][model]["response"]
        finish = "stop"
        out_tok = tokens(answer)
        cost = item["models"][model]["cost"]
        if max_tokens and out_tok > max_tokens:
            answer = answer[: max_tokens * 4]
            cost *= max_tokens / out_tok
            out_tok, finish = max_tokens, "length"
        sys_tok = tokens(system)
        cost += sys_tok * in_price / 1e6  # the dataset's cost covers the prompt alone
        out["response"] = {
            "id": f"chatcmpl-{rng.getrandbits(48):012x}",
            "object": "chat.completion",
            "created": int(ts),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": tokens(text) + sys_tok,
                "completion_tokens": out_tok,
                "total_tokens": tokens(text) + sys_tok + out_tok,
            },
        }
        out["cost"] = round(cost, 10)
        if prompt is None and max_tokens is None:  # RouterBench's own labels, for `thrifty replay`
            out["labels"] = {"correct": {MODELS[m][0]: v["correct"] for m, v in item["models"].items()}}
        out["latency_ms"] = round(300 + out_tok * ms_per_tok * rng.lognormvariate(0, 0.25), 1)
        return out

    model_names = list(MODELS)
    model_weights = [MODELS[m][1] for m in model_names]
    for _ in range(args.requests):
        item = rng.choices(order, weights=weights)[0]
        model = rng.choices(model_names, weights=model_weights)[0]
        key = rng.choices([k for k, _ in keys], weights=[w for _, w in keys])[0]
        feature = {"web-app": "codepilot", "ci-bot": "test-writer", "notebook": "explain"}[key]
        route = "interactive" if key != "ci-bot" else "batch"
        ts = when()
        r = rng.random()
        task = None
        if key == "ci-bot":
            task_n += 1
            task = f"ci-{task_n:05d}"
        if r < 0.04:  # a failed call, retried by the client a few seconds later
            lines.append((ts, record(ts, item, model, key, feature, route, status=rng.choice([429, 500]), task=task)))
            ts += rng.uniform(1, 20)
        elif r < 0.07:  # truncated by a tight max_tokens
            lines.append((ts, record(ts, item, model, key, feature, route, max_tokens=64, task=task)))
            continue
        elif r < 0.10:  # double submit
            lines.append((ts, record(ts, item, model, key, feature, route, task=task)))
            ts += rng.uniform(0.5, 5)
        elif r < 0.20 and history:  # paraphrase of an earlier prompt
            base = rng.choice(history)
            para = rng.choice(PARAPHRASES)(base["item"]["prompt"])
            lines.append((ts, record(ts, base["item"], base["model"], key, feature, route, prompt=para, task=task)))
            continue
        rec = record(ts, item, model, key, feature, route, task=task, temperature=0.0 if rng.random() < 0.7 else 0.7)
        lines.append((ts, rec))
        history.append({"item": item, "model": model})
        if task:
            lines.append((ts + 60, {"task": task, "success": item["models"][model]["correct"]}))
    lines.sort(key=lambda kv: kv[0])
    with open(args.out, "w", encoding="utf-8") as f:
        bad_at = set(rng.sample(range(len(lines)), min(args.bad, len(lines))))
        for i, (_, rec) in enumerate(lines):
            text = json.dumps(rec, separators=(",", ":"))
            if i in bad_at:
                text = text[: len(text) // 2]  # a line cut short, as when a log writer dies mid-write
            f.write(text + "\n")
    print(f"wrote {len(lines):,} lines to {args.out}")


if __name__ == "__main__":
    main()
