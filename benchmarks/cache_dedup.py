"""What the exact cache and in-flight dedup save, and what they cost in latency.

Runs thrifty (cache + dedup on) in front of the mock upstream, both in this process on
loopback, and prints:

1. A traffic mix of WAVES x 20 requests, each wave sent at once: bursts of identical new
   questions (dedup's case), repeats of earlier questions (the cache's case), new questions
   and sampled requests (neither lever may touch them). Upstream calls, and cost and savings
   by lever as the ledger records them.
2. Latency through the server, sequentially: a cache hit vs a miss (mock answering at once),
   whole and streamed (time to first byte for streams).
3. Store lookup latency: the memory LRU, SQLite (memory tier bypassed) and Redis.

    python benchmarks/cache_dedup.py [--waves 100] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
from aiohttp import web

from thrifty.cache.stores import CachedResponse, MemoryStore, RedisStore, SQLiteStore
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing.mock_upstream import MockUpstream
from thrifty.types import Usage

PICO = Decimal(10) ** 12


def config(upstream: MockUpstream, tmp: Path) -> str:
    return f"""
store: sqlite:///{tmp}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - name: gpt-test
    provider: openai
    model: gpt-4o-mini
    base_url: {upstream.base_url}/v1
    price: {{input: 0.15, output: 0.60}}
cache: {{enabled: true}}
dedup: {{enabled: true}}
"""


def body(text: str, temperature: float = 0, stream: bool = False) -> dict[str, object]:
    b: dict[str, object] = {"model": "gpt-test", "messages": [{"role": "user", "content": text}], "temperature": temperature}
    if stream:
        b["stream"] = True
    return b


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def traffic(http: aiohttp.ClientSession, url: str, waves: int) -> dict[str, int]:
    asked: list[str] = []
    sent = {"burst": 0, "repeat": 0, "new": 0, "sampled": 0}
    expected_calls = 0
    for w in range(waves):
        requests: list[dict[str, object]] = []
        for b in range(3):  # 3 bursts of 3 identical new questions, answered in ~50 ms
            text = f"wave {w} burst {b}: what is {w * 7 + b} squared? [slow 50]"
            requests += [body(text)] * 3
            asked.append(text)
            sent["burst"] += 3
            expected_calls += 1
        for r in range(6):  # 6 repeats of earlier questions (new ones in the first wave)
            if w == 0:
                text = f"wave 0 seed {r} [slow 50]"
                asked.append(text)
                expected_calls += 1
                sent["new"] += 1
            else:
                text = asked[(w * 31 + r * 17) % (len(asked) - 9)]
                sent["repeat"] += 1
            requests.append(body(text))
        for n in range(3):
            text = f"wave {w} new {n} [slow 50]"
            requests.append(body(text))
            asked.append(text)
            sent["new"] += 1
            expected_calls += 1
        for s in range(2):
            requests.append(body(f"wave {w} sampled {s} [slow 50]", temperature=0.8))
            sent["sampled"] += 1
            expected_calls += 1

        async def send(b: dict[str, object]) -> None:
            async with http.post(f"{url}/v1/chat/completions", json=b) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()

        await asyncio.gather(*(send(b) for b in requests))
    sent["expected_calls"] = expected_calls
    return sent


def ledger_summary(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT answered_by, cost_pico, counterfactual_pico, savings FROM requests").fetchall()
    conn.close()
    by_lever: dict[str, Decimal] = {}
    answered: dict[str, int] = {}
    for answered_by, _cost, _cf, savings in rows:
        answered[answered_by or "upstream"] = answered.get(answered_by or "upstream", 0) + 1
        for lever, amount in json.loads(savings).items():
            by_lever[lever] = by_lever.get(lever, Decimal(0)) + Decimal(str(amount))
    cost = sum((Decimal(r[1]) for r in rows), Decimal(0)) / PICO
    counterfactual = sum((Decimal(r[2]) for r in rows), Decimal(0)) / PICO
    return {"rows": len(rows), "answered": answered, "cost": cost, "counterfactual": counterfactual, "saved": by_lever}


async def latency(http: aiohttp.ClientSession, url: str, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"miss": [], "hit": [], "stream miss ttfb": [], "stream hit ttfb": []}

    async def timed(b: dict[str, object], stream: bool) -> tuple[float, str]:
        start = time.perf_counter()
        async with http.post(f"{url}/v1/chat/completions", json=b) as resp:
            if stream:
                await resp.content.readany()
                first = time.perf_counter() - start
                await resp.read()
                return first, resp.headers["X-Thrifty-Cache"]
            await resp.read()
            return time.perf_counter() - start, resp.headers["X-Thrifty-Cache"]

    await timed(body("latency warm-up"), False)
    for i in range(n):
        t, outcome = await timed(body(f"latency question {i}"), False)
        assert outcome == "miss"
        out["miss"].append(t)
    for i in range(n):
        t, outcome = await timed(body(f"latency question {i}"), False)
        assert outcome == "hit"
        out["hit"].append(t)
    for i in range(n):
        t, outcome = await timed(body(f"stream question {i}", stream=True), True)
        assert outcome == "miss"
        out["stream miss ttfb"].append(t)
    for i in range(n):
        t, outcome = await timed(body(f"stream question {i}", stream=True), True)
        assert outcome == "hit"
        out["stream hit ttfb"].append(t)
    return out


async def store_latency(tmp: Path, redis_url: str, n: int) -> dict[str, list[float]]:
    entry = CachedResponse(
        protocol="openai",
        body={"choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * 200}, "finish_reason": "stop"}]},
        usage=Usage(input_tokens=500, output_tokens=200),
        cost=Decimal("0.000195"),
    )
    prefix = f"thrifty-bench:{uuid.uuid4().hex}:"
    stores = {"memory LRU": MemoryStore(), "SQLite": SQLiteStore(tmp / "bench.cache.db"), "Redis": RedisStore(redis_url, prefix=prefix)}
    out: dict[str, list[float]] = {}
    for name, store in stores.items():
        for i in range(n):
            await store.set(f"k{i}", entry, ttl=600)
        times = []
        for i in range(n):
            start = time.perf_counter()
            got = await store.get(f"k{(i * 7919) % n}")
            times.append(time.perf_counter() - start)
            assert got is not None
        out[name] = times
        await store.clear()
        await store.close()
    return out


async def main(waves: int, redis_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        upstream = await MockUpstream().start()
        gateway = Gateway(parse_config(config(upstream, tmp)))
        runner = web.AppRunner(create_app(gateway), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            started = time.perf_counter()
            sent = await traffic(http, url, waves)
            elapsed = time.perf_counter() - started
            calls = upstream.calls["openai"]
            assert gateway.ledger is not None
            gateway.ledger.flush()
            summary = ledger_summary(tmp / "ledger.db")
            total = sum(v for k, v in sent.items() if k != "expected_calls")
            print(f"== traffic mix: {total} requests in {waves} waves of 20 ({elapsed:.1f} s) ==")
            print(f"   sent: {sent['burst']} in bursts of 3 identical, {sent['repeat']} repeats, "
                  f"{sent['new']} new, {sent['sampled']} sampled (temperature 0.8)")
            print(f"   upstream calls: {calls} (without the levers: {total}; expected with them: {sent['expected_calls']})")
            print(f"   answered by: {summary['answered']}")
            cost, cf = summary["cost"], summary["counterfactual"]
            print(f"   cost ${cost:.6f} vs counterfactual ${cf:.6f}: saved {(1 - cost / cf) * 100:.1f}%")  # type: ignore[operator]
            for lever, amount in sorted(summary["saved"].items()):  # type: ignore[attr-defined]
                print(f"   saved by {lever}: ${amount:.6f}")

            lat = await latency(http, url, 200)
            print("== latency through the server, sequential, mock answers at once (ms) ==")
            for name, values in lat.items():
                print(f"   {name:<18} p50 {statistics.median(values) * 1000:6.2f}   p99 {pct(values, 0.99) * 1000:6.2f}")
        await runner.cleanup()
        await upstream.stop()
        stores = await store_latency(tmp, redis_url, 2000)
        print("== store lookup latency, 2,000 gets of a 1.3 kB answer (µs) ==")
        for name, values in stores.items():
            print(f"   {name:<11} p50 {statistics.median(values) * 1e6:7.1f}   p99 {pct(values, 0.99) * 1e6:7.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waves", type=int, default=100)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(main(args.waves, args.redis))
