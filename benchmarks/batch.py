#!/usr/bin/env python
"""The batch lane's targets, measured: kill -9 and resume, repeats from cache, the provider
batch discount billed to the picodollar, and the engine's batch throughput.

1. `calls` target: a job of N lines (10% repeat an earlier line) against the mock upstream,
   run by `thrifty batch resume` in a child process that is killed with SIGKILL at three
   random points (random numbers of settled lines), then resumed to the end. Checked: the
   output holds every custom_id once, in input order; the ledger holds exactly one row per
   line; upstream calls at the mock vs lines not answered by a lever (a line in flight at a
   kill is asked again: no upstream offers an idempotent chat call, so that is the floor).
2. `provider_batch` target: the same with the mock's batch API (completes after a delay, 100
   lines per provider batch). Checked as above, plus: lines the mock answered = lines not
   answered by a lever, provider batches created = chunks recorded (none submitted twice),
   and the ledger's job total = the mock's bill at 50%, to the picodollar.
3. A second job repeating 40% of job 1's lines: those lines cost 0 and are marked.
4. The embedded engine: 64 short prompts as a batch (full occupancy) vs one at a time;
   output tokens per second of each and their ratio (2 shared CPU cores: noisy).

Usage: python benchmarks/batch.py [--lines 500] [--seed 7] [--no-engine | --only-engine] [--keep DIR]
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
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from thrifty.testing.mock_upstream import MockUpstream

CLI = [sys.executable, "-m", "thrifty.cli", "batch"]
PICO = Decimal(10) ** 12


class MockThread:
    """The mock upstream on its own event loop, so the children can reach it while we wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.mock = asyncio.run_coroutine_threadsafe(MockUpstream().start(), self.loop).result()


def config(mock: MockUpstream, db: Path, batch: str) -> str:
    return f"""
store: sqlite:///{db}
ledger: {{flush_interval: 0.05}}
cache: {{enabled: true}}
dedup: {{enabled: true}}
batch: {batch}
models:
  - name: gpt-test
    provider: openai
    model: gpt-4o-mini
    base_url: {mock.base_url}/v1
    price: {{input: 0.15, output: 0.60}}
    retry_backoff: 0.01
"""


def lines(n: int, rng: random.Random, prefix: str, repeat: float = 0.1, slow: int = 15) -> list[dict[str, Any]]:
    texts: list[str] = []
    for i in range(n):
        if texts and rng.random() < repeat:
            texts.append(rng.choice(texts))
        else:
            texts.append(f"{prefix} question {i}: what is {rng.randint(1, 10**6)}? [slow {slow}]")
    return [{"custom_id": f"{prefix}-{i:05d}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-test", "temperature": 0, "messages": [{"role": "user", "content": t}]}}
            for i, t in enumerate(texts)]


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))


def q(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []


def settled(db: Path) -> int:
    rows = q(db, "SELECT COUNT(*) FROM batch_lines WHERE state IN ('done', 'failed')")
    return int(rows[0][0]) if rows else 0


def run_with_kills(cfg: Path, db: Path, job: str, triggers: list[Callable[[int], bool]], out: Path) -> list[int]:
    """Resume `job` in a child, SIGKILL it when each trigger fires (given the settled-line
    count when the child started), then resume it to the end. Returns the settled-line count
    at each kill."""
    at: list[int] = []
    for make in triggers:
        base = settled(db)

        def trigger(make: Callable[[int], bool] = make, base: int = base) -> bool:
            return make(base)

        child = subprocess.Popen([*CLI, "resume", job, "-o", str(out), "--config", str(cfg)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not trigger():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the child ended before the kill point (rc {child.returncode})")
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        at.append(settled(db))
    done = subprocess.run([*CLI, "resume", job, "-o", str(out), "--config", str(cfg)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return at


def submit(cfg: Path, inp: Path, out: Path) -> str:
    r = subprocess.run([*CLI, "run", str(inp), "-o", str(out), "--submit-only", "--config", str(cfg)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return r.stdout.strip().splitlines()[-1]


def report(cfg: Path, job: str) -> dict[str, Any]:
    r = subprocess.run([*CLI, "status", job, "--json", "--config", str(cfg)], capture_output=True, text=True)
    return dict(json.loads(r.stdout))


def check(db: Path, job: str, out: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    ids = [json.loads(x)["custom_id"] for x in out.read_text().splitlines()]
    rows = q(db, "SELECT COUNT(*), COUNT(DISTINCT request_id), COALESCE(SUM(cost_pico), 0) FROM requests "
                 "WHERE request_id LIKE ?", (f"req_{job}_%",))[0]
    return {"output_in_order": ids == [i["custom_id"] for i in items], "output_lines": len(ids),
            "ledger_rows": rows[0], "ledger_distinct": rows[1], "ledger_cost_pico": int(rows[2])}


def part_calls(work: Path, mock: MockUpstream, n: int, rng: random.Random) -> tuple[Path, Path, list[dict[str, Any]]]:
    db = work / "calls.db"
    cfg = work / "calls.yaml"
    cfg.write_text(config(mock, db, "{concurrency: 8, poll_seconds: 0.05, lease_seconds: 60}"))
    items = lines(n, rng, "job1")
    write_jsonl(work / "job1.jsonl", items)
    out = work / "job1.out.jsonl"
    job = submit(cfg, work / "job1.jsonl", out)
    steps = [rng.randint(n // 20, n // 4) for _ in range(3)]  # a random number of lines into each run
    before = mock.calls["openai"]
    kills = run_with_kills(cfg, db, job, [lambda base, d=d: settled(db) >= base + d for d in steps], out)
    calls = mock.calls["openai"] - before
    r = report(cfg, job)
    c = check(db, job, out, items)
    executed = r["executed"].get("calls", 0)
    print(f"\n1. calls target, {n} lines, SIGKILL at settled lines {kills}, then resumed")
    print(f"   output complete and in custom_id order: {c['output_in_order']} ({c['output_lines']} lines)")
    print(f"   ledger rows for the job: {c['ledger_rows']} ({c['ledger_distinct']} distinct request ids; one per line: "
          f"{c['ledger_rows'] == c['ledger_distinct'] == n})")
    print(f"   answered by a lever: {r['from_cache']} from cache, {r['deduplicated']} deduplicated; executed: {executed}")
    print(f"   upstream calls at the mock: {calls} = lines executed {executed} + {calls - executed} asked again "
          f"(in flight at a kill, at most concurrency x kills = {8 * 3})")
    print(f"   ledger job total = lines' settled cost: {c['ledger_cost_pico'] == r['cost_pico']}")
    return cfg, db, items


def part_provider(work: Path, mock: MockUpstream, n: int, rng: random.Random) -> None:
    db = work / "provider.db"
    cfg = work / "provider.yaml"
    cfg.write_text(config(mock, db, "{provider_batch_models: [gpt-test], provider_batch_min_deadline: 3600, "
                                    "provider_batch_size: 100, concurrency: 8, poll_seconds: 0.1, lease_seconds: 60}"))
    mock.batch_delay = 1.0
    mock.batch_prices = {"gpt-4o-mini": {"input": Decimal("0.15"), "output": Decimal("0.60")}}
    billed_before, lines_before, created_before = mock.batch_billed, mock.calls["batch_lines"], mock.calls["batch_create"]
    calls_before = mock.calls["openai"]
    items = lines(n, rng, "pb", slow=0)
    write_jsonl(work / "pb.jsonl", items)
    out = work / "pb.out.jsonl"
    job = submit(cfg, work / "pb.jsonl", out)

    def chunk_recorded(_base: int) -> bool:
        return bool(q(db, "SELECT 1 FROM batch_provider"))

    a, b = (rng.randint(1, n // 4) for _ in range(2))
    kills = run_with_kills(cfg, db, job, [chunk_recorded, lambda base: settled(db) >= base + a,
                                          lambda base: settled(db) >= base + b], out)
    r = report(cfg, job)
    c = check(db, job, out, items)
    chunks = q(db, "SELECT COUNT(*) FROM batch_provider")[0][0]
    answered = mock.calls["batch_lines"] - lines_before
    created = mock.calls["batch_create"] - created_before
    billed = mock.batch_billed - billed_before
    fallback = mock.calls["openai"] - calls_before
    ledger = Decimal(c["ledger_cost_pico"]) / PICO
    print(f"\n2. provider batch API at 50%, {n} lines, SIGKILL at: first chunk recorded, then settled lines {kills[1:]}")
    print(f"   output complete and in custom_id order: {c['output_in_order']} ({c['output_lines']} lines)")
    print(f"   ledger rows: {c['ledger_rows']} ({c['ledger_distinct']} distinct; one per line: "
          f"{c['ledger_rows'] == c['ledger_distinct'] == n})")
    print(f"   answered by a lever: {r['from_cache']} from cache, {r['deduplicated']} deduplicated; executed {r['executed']}")
    print(f"   lines the mock's batch API answered: {answered} (= executed via provider_batch "
          f"{r['executed'].get('provider_batch', 0)}); ordinary calls (fallback): {fallback}")
    print(f"   provider batches created at the mock: {created}, chunks recorded: {chunks} (never submitted twice: "
          f"{created == chunks})")
    print(f"   ledger job total ${ledger} vs mock billed ${billed}: equal to the picodollar: {ledger == billed} "
          f"(difference {int((ledger - billed) * PICO)} pUSD)")


def part_repeat(work: Path, mock: MockUpstream, cfg: Path, db: Path, first: list[dict[str, Any]], rng: random.Random) -> None:
    n = len(first)
    repeated = rng.sample(first, n * 2 // 5)
    items = [{**i, "custom_id": f"job2-r{k:05d}"} for k, i in enumerate(repeated)]
    items += [{**i, "custom_id": f"job2-n{k:05d}"} for k, i in enumerate(lines(n - len(items), rng, "job2", repeat=0))]
    rng.shuffle(items)
    write_jsonl(work / "job2.jsonl", items)
    before = mock.calls["openai"]
    r = subprocess.run([*CLI, "run", str(work / "job2.jsonl"), "-o", str(work / "job2.out.jsonl"), "--config", str(cfg)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    job = q(db, "SELECT id FROM batch_jobs ORDER BY created_at DESC LIMIT 1")[0][0]
    rows = q(db, "SELECT custom_id, answered_by, cost_pico FROM batch_lines WHERE job_id = ?", (job,))
    rep = [x for x in rows if x[0].startswith("job2-r")]
    marked = [json.loads(x)["thrifty"]["answered_by"] for x in (work / "job2.out.jsonl").read_text().splitlines()
              if json.loads(x)["custom_id"].startswith("job2-r")]
    print(f"\n3. a second job of {n} lines repeating {len(repeated)} (40%) of job 1's lines")
    print(f"   repeated lines from cache: {sum(1 for x in rep if x[1] == 'cache')}/{len(rep)}, their cost: "
          f"{sum(x[2] for x in rep)} pUSD, marked 'cache' in the output: {marked.count('cache')}/{len(marked)}")
    print(f"   upstream calls for job 2: {mock.calls['openai'] - before} (new lines: {n - len(repeated)})")


def part_engine(work: Path, prompts: int) -> None:
    code = r"""
import asyncio, json, sys, time
from thrifty.batch.inputs import Line
from thrifty.batch.lane import BatchLane
from thrifty.batch.settings import BatchSettings
from thrifty.config import parse_config
from thrifty.gateway import Gateway

N = int(sys.argv[2])
CFG = f'''
store: sqlite:///{sys.argv[1]}
engine: {{max_active: 8, max_queue: 64}}
models:
  - {{name: gemma, provider: local, model: default}}
'''
async def main():
    gw = Gateway(parse_config(CFG))
    await gw.start()
    words = ["river", "lamp", "orange", "cloud", "piano", "stone", "garden", "tiger"]
    def mk():
        return [Line(i + 1, f"e{i}", {"model": "gemma", "max_tokens": 24, "temperature": 0,
                "messages": [{"role": "user", "content": f"Write one sentence about a {words[i % 8]} number {i}."}]})
                for i in range(N)]
    out = {}
    for name, settings, target in (("batch", BatchSettings(), "engine"), ("one_at_a_time", BatchSettings(concurrency=1), "calls")):
        lane = BatchLane(gw, settings=settings)
        job = await lane.submit(wire="openai", endpoint="/v1/chat/completions", lines=mk(), target=target)
        t = time.perf_counter()
        await lane.run_job(job["id"])
        wall = time.perf_counter() - t
        toks = sum(json.loads(l["result"])["usage"]["completion_tokens"] for l in lane.store.lines(job["id"]))
        out[name] = {"wall_s": wall, "tokens": toks, "tok_s": toks / wall, "occupancy": lane.concurrency(job)}
        await asyncio.to_thread(lane.store.close)
    await gw.close()
    print(json.dumps(out))
asyncio.run(main())
"""
    r = subprocess.run([sys.executable, "-c", code, str(work / "engine.db"), str(prompts)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"\n4. engine: failed: {r.stderr[-2000:]}")
        return
    res = json.loads(r.stdout.strip().splitlines()[-1])
    b, o = res["batch"], res["one_at_a_time"]
    print(f"\n4. embedded engine, {prompts} short prompts (max_tokens 24), measured on this machine (noisy: shared CPU)")
    print(f"   batch (up to {b['occupancy']} in flight): {b['tokens']} tokens in {b['wall_s']:.1f}s = {b['tok_s']:.1f} tok/s")
    print(f"   one at a time: {o['tokens']} tokens in {o['wall_s']:.1f}s = {o['tok_s']:.1f} tok/s")
    print(f"   tokens/s ratio batch / one at a time: {b['tok_s'] / o['tok_s']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine-prompts", type=int, default=64)
    parser.add_argument("--no-engine", action="store_true")
    parser.add_argument("--only-engine", action="store_true", help="Run part 4 alone.")
    parser.add_argument("--keep", type=Path, help="Keep the work files in this folder.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="thrifty-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not args.only_engine:
        mock = MockThread().mock
        cfg, db, first = part_calls(work, mock, args.lines, rng)
        part_provider(work, mock, args.lines, rng)
        part_repeat(work, mock, cfg, db, first, rng)
    if not args.no_engine:
        part_engine(work, args.engine_prompts)


if __name__ == "__main__":
    main()
