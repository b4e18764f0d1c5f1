#!/usr/bin/env python
"""The flagship figure: every lever stacked, on recorded answers of real models.

Traffic, built only from ../shared/data (the questions and the answers real models gave them,
at their recorded or list-price cost):
- RouterBench MBPP test (128 prompts; 11 models' answers, costs and correctness),
- RouteLLM GSM8K (the 20% test split of benchmarks/routing.py; Mixtral's and GPT-4's answers),
- RouteLLM MMLU (a sample of the 20% test split; both models' correctness; its router learns
  from a sample of 2,000 train questions, to keep the run short),
each route with its own long system prompt; popular questions asked again on a Zipf curve;
bursts of identical requests arriving together.

The same traffic goes over HTTP to `thrifty serve` twice, every model a `replay` model that
answers with its recorded answer at its recorded cost:
1. always-strongest: every request to gpt-4-1106-preview, no lever;
2. stacked: exact cache, in-flight dedup, semantic cache and the learned router (one per
   route, trained on the train splits only, its knob from the train calibration for the target
   fraction of GPT-4's accuracy), run once per target (0.99 and 0.95).
It prints the savings waterfall by lever from the ledger, the accuracy of the answers that came
back (GSM8K graded by thrifty's numeric grader against the gold answers; MBPP and MMLU by the
datasets' recorded correctness of the model whose answer was served; a semantic-cache hit on
those two counts as wrong, since it is another question's answer), and checks the ledger's
total against the offline computation (each distinct question paid once, at the recorded cost
of the model the router picks for it). Compression and caps stay off: a recorded answer costs
what it cost whatever the prompt, so their savings cannot be replayed (benchmarks/compression.py
measures them).

Usage: python benchmarks/stack.py [--mmlu 400] [--zipf 700] [--bursts 50] [--plot docs/stack.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from routing import cached_embed  # noqa: E402
from routing_e2e import _free_port, _wait_ready  # noqa: E402

from thrifty.evals.graders import grade  # noqa: E402
from thrifty.routing.datasets import convert_routellm_gsm8k, convert_routellm_mmlu, convert_routerbench  # noqa: E402
from thrifty.routing.features import FeatureSpec, featurize  # noqa: E402
from thrifty.routing.labeled import Example, split_fixed, write_labeled  # noqa: E402
from thrifty.routing.learned import RouterArtifact, load_artifact, train  # noqa: E402
from thrifty.routing.learned import route as pick  # noqa: E402

GPT4 = "gpt-4-1106-preview"
PICO = Decimal(10) ** 12
LEVERS = ("route", "cache", "dedup", "semantic_cache")

#: One long system prompt per route, as products send them (they change neither answers nor costs here).
SYSTEMS = {
    "mbpp": "You are the coding assistant of a developer platform. Write a correct, idiomatic Python 3 "
    "function for the task the user describes. Prefer the standard library, name things clearly, handle "
    "edge cases the task implies, and return only the code unless the user asks for an explanation. " * 3,
    "gsm8k": "You are a patient maths tutor for school students. Solve the word problem step by step, "
    "showing each calculation on its own line, and finish with the final numeric answer after '####'. " * 3,
    "mmlu": "You answer multiple-choice exam questions across academic subjects. Read the question and "
    "the four options, choose the single best option and answer with its letter. " * 3,
}


@dataclass
class Item:
    route: str
    ex: Example
    gold: str | None = None  # GSM8K's gold answer


def load(data: Path, n_mmlu: int, n_mmlu_train: int, seed: int) -> tuple[dict[str, list[Example]], list[Item]]:
    """Train splits (for the routers) and the distinct test questions of the traffic."""
    rb = data / "routing"
    mb_tr = convert_routerbench(rb / "routerbench" / "mbpp_train.csv").examples
    mb_te = convert_routerbench(rb / "routerbench" / "mbpp_test.csv").examples
    gs = convert_routellm_gsm8k(rb / "routellm_gsm8k_responses.csv").examples
    gs_tr, gs_te = split_fixed(gs, 0.8, salt="gsm8k-80-20")
    mm = convert_routellm_mmlu(rb / "routellm_mmlu").examples
    mm_tr, mm_te = split_fixed(mm, 0.8, salt="mmlu-80-20")
    gold = {}
    with (rb / "routellm_gsm8k_test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            gold[str(row["question"]).strip()] = str(row["answer"])
    mm_te = random.Random(seed).sample(mm_te, min(n_mmlu, len(mm_te)))
    mm_tr = random.Random(seed).sample(mm_tr, min(n_mmlu_train, len(mm_tr)))
    items = [Item("mbpp", e) for e in mb_te] + [Item("gsm8k", e, gold.get(e.text.strip())) for e in gs_te]
    items += [Item("mmlu", e) for e in mm_te]
    return {"mbpp": mb_tr, "gsm8k": gs_tr, "mmlu": mm_tr}, items


def routers(train_sets: dict[str, list[Example]], out: Path) -> dict[str, Path]:
    """One learned router per route, trained on its train split (cached under `out`)."""
    embed = cached_embed(out)
    paths = {}
    for name, examples in train_sets.items():
        path = out / f"{name}_router.pkl"
        if not path.exists():
            t = time.perf_counter()
            spec = FeatureSpec()
            x = featurize([e.text for e in examples], spec, embed)
            art = train(examples, spec=spec, target=0.99, reference=GPT4, x=x)
            art.save(path)
            print(f"[{name}] router trained on {len(examples)} train questions in {time.perf_counter() - t:.0f}s")
        paths[name] = path
    return paths


def traffic(items: list[Item], zipf: int, bursts: int, burst_size: int, seed: int) -> list[list[int]]:
    """Waves of requests (indices into `items`): every question once, Zipf-popular repeats
    spread among them, and bursts of `burst_size` identical requests sent together."""
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    rank = np.arange(1, len(order) + 1, dtype=np.float64) ** -1.1
    popular = rng.choices(order, weights=list(rank / rank.sum()), k=zipf)
    waves: list[list[int]] = [[i] for i in order]
    for i in popular:  # a repeat comes after the question's first appearance
        first = next(n for n, w in enumerate(waves) if w[0] == i)
        waves.insert(rng.randint(first + 1, len(waves)), [i])
    for i in rng.sample(order, bursts):
        first = next(n for n, w in enumerate(waves) if w[0] == i)
        waves.insert(rng.randint(first, len(waves)), [i] * burst_size)
    return waves


def write_config(path: Path, ledger: Path, dataset: Path, models: list[str], port: int,
                 stacked: bool, router_paths: dict[str, Path], target: float) -> None:  # fmt: skip
    lines = [f"server: {{host: 127.0.0.1, port: {port}}}", f'store: "sqlite:///{ledger}"', "models:"]
    for m in models:
        lines.append(f'  - {{name: "{m}", provider: replay, max_retries: 0, options: {{dataset: "{dataset}"}}}}')
    if stacked:
        lines += [
            "cache: {enabled: true, store: memory, ttl: null}",
            "dedup: {enabled: true}",
            "semantic_cache: {enabled: true}",
            "routes:",
        ]
        for name, p in router_paths.items():
            lines.append(f'  {name}: {{route: {{router: "{p}", default: "{GPT4}", target: {target}}}}}')
    path.write_text("\n".join(lines) + "\n")


Replies = list[tuple[int, dict[str, Any], str, str]]
"""(item index, response body, X-Thrifty-Cache, X-Thrifty-Request-Id) per request."""


async def send(port: int, items: list[Item], waves: list[list[int]], concurrency: int) -> Replies:
    """Send the waves in order, `concurrency` waves at a time; a burst's requests go together."""
    import aiohttp

    out: Replies = []
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            it = items[i]
            body = {
                "model": GPT4, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEMS[it.route]}, {"role": "user", "content": it.ex.text}],
            }  # fmt: skip
            headers = {"X-Thrifty-Tags": f"route={it.route}"}
            async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers) as r:
                data = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"gateway answered {r.status}: {data}")
                out.append((i, data, r.headers.get("X-Thrifty-Cache", ""), r.headers.get("X-Thrifty-Request-Id", "")))

        async def wave(w: list[int]) -> None:
            async with sem:
                await asyncio.gather(*(one(i) for i in w))

        pending: set[asyncio.Task[None]] = set()
        for w in waves:
            if len(pending) >= concurrency:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.add(asyncio.create_task(wave(w)))
        await asyncio.gather(*pending)
    return out


def serve_and_send(config: Path, port: int, items: list[Item], waves: list[list[int]], log: Path,
                   concurrency: int) -> tuple[Replies, float]:  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with log.open("w") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config), "--log-level", "warning"],
            stdout=logf, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            _wait_ready(port, proc)
            t = time.perf_counter()
            replies = asyncio.run(send(port, items, waves, concurrency))
            elapsed = time.perf_counter() - t
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return replies, elapsed


async def accuracy(items: list[Item], replies: Replies) -> dict[str, float]:
    """Share of correct served answers, per route and overall."""
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for i, data, cache, _ in replies:
        it = items[i]
        text = data["choices"][0]["message"]["content"] or ""
        if it.route == "gsm8k" and it.gold is not None:
            ok = (await grade({"type": "numeric"}, text, it.gold)).passed
        elif cache == "semantic-hit":
            ok = False  # another question's answer
        else:
            cand = it.ex.candidates.get(data["model"])
            ok = bool(cand is not None and cand.quality >= 0.5)
        right[it.route] += bool(ok)
        total[it.route] += 1
    acc = {r: right[r] / total[r] for r in total}
    acc["all"] = sum(right.values()) / sum(total.values())
    return acc


def ledger_sums(ledger: Path) -> dict[str, Any]:
    with sqlite3.connect(ledger) as db:
        n, cost, cf = db.execute("SELECT COUNT(*), SUM(cost_pico), SUM(counterfactual_pico) FROM requests").fetchone()
        savings: Counter[str] = Counter()
        for (raw,) in db.execute("SELECT savings FROM requests"):
            for lever, usd in (json.loads(raw) if raw else {}).items():
                savings[lever] += Decimal(str(usd))
        answered = Counter(dict(db.execute("SELECT COALESCE(answered_by, 'provider'), COUNT(*) FROM requests GROUP BY 1").fetchall()))
        served = Counter(dict(db.execute("SELECT served_model, COUNT(*) FROM requests GROUP BY 1").fetchall()))
    return {"rows": n, "cost": Decimal(cost or 0) / PICO, "counterfactual": Decimal(cf or 0) / PICO,
            "savings": savings, "answered": answered, "served": served}  # fmt: skip


def offline_cost(items: list[Item], arts: dict[str, RouterArtifact], paid: list[int], target: float, out: Path) -> Decimal:
    """Each request that reached a provider at the recorded cost of the router's pick for its question."""
    embed = cached_embed(out)
    total = Decimal(0)
    for name, art in arts.items():
        idx = [i for i in paid if items[i].route == name]
        if not idx:
            continue
        x = featurize([items[i].ex.text for i in idx], art.spec, embed)
        p = art.predict_features(x)
        cal = art.calibration
        assert cal is not None
        knob = art.knob_for(cal.policy, target)
        assert knob is not None
        models = pick(art, p, cal.policy, knob, art.candidates)
        total += sum((items[i].ex.candidates[m].cost for i, m in zip(idx, models, strict=True)), Decimal(0))
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    data, out = args.data, args.out
    out.mkdir(parents=True, exist_ok=True)
    train_sets, items = load(data, args.mmlu, args.mmlu_train, args.seed)
    router_paths = routers(train_sets, out)
    arts = {k: load_artifact(p) for k, p in router_paths.items()}
    dataset = out / "stack_answers.jsonl"
    write_labeled([it.ex for it in items], dataset)
    models = sorted({m for it in items for m in it.ex.candidates})
    waves = traffic(items, args.zipf, args.bursts, args.burst_size, args.seed)
    n_requests = sum(len(w) for w in waves)
    mix = Counter(items[i].route for w in waves for i in w)
    print(f"traffic: {n_requests:,} requests, {len(items):,} distinct questions "
          f"({', '.join(f'{r} {c:,}' for r, c in mix.items())}); {args.zipf:,} Zipf repeats, "
          f"{args.bursts} bursts of {args.burst_size}; system prompts of ~{len(SYSTEMS['mbpp']) // 4} tokens")  # fmt: skip
    results: dict[str, Any] = {"requests": n_requests, "distinct": len(items), "mix": dict(mix), "runs": {}}
    plans = [("always-strongest", False, 1.0)] + [(f"stacked, target {t:g}", True, t) for t in args.targets]
    for name, stacked, target in plans:
        ledger = out / f"stack_ledger_{len(results['runs'])}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(ledger) + suffix).unlink(missing_ok=True)
        port = _free_port()
        config = out / f"stack_{len(results['runs'])}.yaml"
        write_config(config, ledger, dataset, models, port, stacked, router_paths, target)
        replies, elapsed = serve_and_send(config, port, items, waves, out / f"stack_serve_{len(results['runs'])}.log", args.concurrency)
        sums = ledger_sums(ledger)
        acc = asyncio.run(accuracy(items, replies))
        run_out: dict[str, Any] = {"ledger": sums, "accuracy": acc, "seconds": elapsed, "target": target}
        if stacked:
            # The requests the ledger says reached a provider (no lever answered them).
            with sqlite3.connect(ledger) as db:
                called = {r for (r,) in db.execute("SELECT request_id FROM requests WHERE answered_by IS NULL")}
            paid = [i for i, _, _, rid in replies if rid in called]
            run_out["offline"] = offline_cost(items, arts, paid, target, out)
            run_out["provider_calls"] = len(paid)
            run_out["paid_questions"] = len(set(paid))
        results["runs"][name] = run_out
        print(f"[{name}] {len(replies):,} replies in {elapsed:.1f}s; ledger {sums['rows']:,} rows, "
              f"cost ${sums['cost']:.4f}, counterfactual ${sums['counterfactual']:.4f}")  # fmt: skip
    return results


def report(results: dict[str, Any], plot: Path | None) -> None:
    runs = results["runs"]
    base = runs["always-strongest"]
    base_cost, base_acc = base["ledger"]["cost"], base["accuracy"]
    print(f"\n== Stacked levers vs always {GPT4}, {results['requests']:,} requests ==")
    print(f"always-strongest: ${base_cost:.4f}; accuracy " + ", ".join(f"{k} {v:.4f}" for k, v in base_acc.items()))
    for name, r in runs.items():
        if name == "always-strongest":
            continue
        led = r["ledger"]
        cut = 1 - led["cost"] / base_cost
        rel = r["accuracy"]["all"] / base_acc["all"]
        print(f"\n[{name}] cost ${led['cost']:.4f} = {float(cut):.1%} cut; accuracy "
              + ", ".join(f"{k} {v:.4f}" for k, v in r["accuracy"].items())
              + f" = {rel:.1%} of always-strongest")  # fmt: skip
        print("  waterfall (ledger savings by lever):")
        left = base_cost
        print(f"    {'always-strongest':<18} ${base_cost:>10.4f}")
        for lever in LEVERS:
            s = led["savings"].get(lever, Decimal(0))
            left -= s
            print(f"    - {lever:<16} ${s:>10.4f}  ({float(s / base_cost):.1%} of the baseline)")
        other = left - led["cost"]
        print(f"    = {'left':<16} ${left:>10.4f}  (ledger cost ${led['cost']:.4f}; unattributed ${other:.6f})")
        print(f"  ledger counterfactual ${led['counterfactual']:.4f} vs always-strongest ledger ${base_cost:.4f}")
        print(f"  answered by: {dict(led['answered'])}; served by: {dict(led['served'].most_common(6))}")
        ok = abs(led["cost"] - r["offline"]) < Decimal("1e-9")
        print(f"  ledger total ${led['cost']:.6f} vs offline (the {r['provider_calls']:,} provider calls, for "
              f"{r['paid_questions']:,} distinct questions, each at the recorded cost of the router's pick) "
              f"${r['offline']:.6f}: {'EQUAL' if ok else 'DIFFERENT'}")  # fmt: skip
    if plot is not None:
        chart(results, plot)
        print(f"\nchart: {plot}")


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    base = float(runs["always-strongest"]["ledger"]["cost"])
    stacked = [(n, r) for n, r in runs.items() if n != "always-strongest"]
    fig, axes = plt.subplots(1, len(stacked), figsize=(6.2 * len(stacked), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], stacked, strict=True):
        led = r["ledger"]
        labels, bottoms, heights, colors = ["always\nGPT-4"], [0.0], [base], ["#4c72b0"]
        left = base
        for lever, color in zip(LEVERS, ("#dd8452", "#55a868", "#c44e52", "#8172b3"), strict=True):
            s = float(led["savings"].get(lever, 0))
            left -= s
            labels.append(lever.replace("_", "\n"))
            bottoms.append(left)
            heights.append(s)
            colors.append(color)
        labels.append("thrifty")
        bottoms.append(0.0)
        heights.append(float(led["cost"]))
        colors.append("#2f4b7c")
        ax.bar(range(len(labels)), heights, bottom=bottoms, color=colors)
        for k, (b, h) in enumerate(zip(bottoms, heights, strict=True)):
            ax.text(k, b + h, f"${h:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        cut = 1 - float(led["cost"]) / base
        rel = r["accuracy"]["all"] / runs["always-strongest"]["accuracy"]["all"]
        ax.set_title(f"{name}: {cut:.1%} cheaper, {rel:.1%} of GPT-4's accuracy", fontsize=9)
        ax.set_ylabel("USD (recorded costs)")
    fig.suptitle(f"{results['requests']:,} requests (MBPP, GSM8K, MMLU recorded answers): savings by lever, from the ledger", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "stack")
    ap.add_argument("--mmlu", type=int, default=400, help="MMLU test questions in the traffic")
    ap.add_argument("--mmlu-train", type=int, default=2000, help="MMLU train questions the MMLU router learns from")
    ap.add_argument("--zipf", type=int, default=700, help="repeats of popular questions (Zipf, s=1.1)")
    ap.add_argument("--bursts", type=int, default=50)
    ap.add_argument("--burst-size", type=int, default=4)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.99, 0.95])
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", type=Path, help="write the waterfall chart here (PNG)")
    args = ap.parse_args()
    report(run(args), args.plot)


if __name__ == "__main__":
    main()
