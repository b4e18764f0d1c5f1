"""Spend control under concurrency and across replicas: every figure of the budgets issue.

Two replicas are two thrifty apps in this process, each with its own gateway, ledger writer
and socket, sharing one Redis (a unique key prefix per run, deleted at the end; nothing else
in Redis is touched) and one SQLite ledger. The upstream is thrifty's mock on a real socket;
its answers echo the prompt, so answer lengths vary with the prompts.

  A. 200 concurrent requests against one $0.10 budget through both replicas: settled spend
     (the ledger's sum) over the budget, against the dearest single request; and refusals
     checked one by one: each must have been refused with settled + in-flight reservations +
     its own reservation over the budget (the numbers the refusal reports, exact nano-USD).
  B. A client without max_tokens on a $50 budget of which $0.10 is spent (history in the
     ledger): how many of 50 concurrent requests are admitted, and, side by side, a key whose
     ledger history is empty (so the model's output limit is reserved).
  C. 600 requests/min over both replicas at 20 requests/s offered: admitted per window.
     By default the window is shortened 10x (rate_window 6 s, limit 60 per 6 s: the same
     600/min); --full-minute runs real 60 s windows (about 2.5 minutes).
  D. A replica restarted mid-window: the budget's counters before and after (Redis), and the
     same with in-process counters rebuilt from the ledger.
  E. Admission cost at the function level: the median wall time of authenticate + admit (the
     part on the request's path; settlement is scheduled after the answer) for a key with 3 budgets of its own, its team's budget and rpm, a tag budget and
     rpm/tpm/concurrency limits (8 meters), against the same calls for a request with no key
     and no budget, interleaved; in-process counters and Redis counters. The end-to-end figure
     over HTTP is `benchmarks/gateway_overhead.py --spend`.

    python benchmarks/budgets.py [--redis redis://127.0.0.1:6379/0] [--full-minute]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.store import open_store
from thrifty.server.app import create_app
from thrifty.spend.control import SpendControl
from thrifty.spend.keys import KeySpec, KeyStore
from thrifty.testing.mock_upstream import MockUpstream

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma"]


class Replica:
    def __init__(self, config: str) -> None:
        self.config = config
        self.gateway: Gateway | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Replica:
        self.gateway = Gateway(parse_config(self.config))
        self.runner = web.AppRunner(create_app(self.gateway), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    @property
    def spend(self) -> SpendControl:
        assert self.gateway is not None and self.gateway.services.spend is not None
        return self.gateway.services.spend

    async def settle(self) -> None:
        await self.spend.drain()
        assert self.gateway is not None and self.gateway.ledger is not None
        await asyncio.to_thread(self.gateway.ledger.flush)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def config_text(mock: MockUpstream, store: str, redis: str | None, prefix: str, extra: str = "") -> str:
    shared = f"  redis: {redis}\n  redis_prefix: \"{prefix}\"\n" if redis else ""
    return f"""
store: {store}
ledger: {{flush_interval: 0.05}}
models:
  - {{name: bench, provider: openai, model: gpt-4o-mini, base_url: "{mock.base_url}/v1",
      price: {{input: 2, output: 8}}, max_retries: 0}}
  - {{name: bench-large, provider: openai, model: gpt-4o, base_url: "{mock.base_url}/v1",
      price: {{input: 15, output: 75}}, max_retries: 0}}
spend:
  keys_refresh: 1
  output_limits: {{bench: 16384, bench-large: 128000}}
{shared}{extra}
"""


async def post(session: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(content_type=None)


def ledger_rows(store_url: str, key_name: str) -> list[tuple[float, int, int]]:
    store = open_store(store_url)
    try:
        return [(float(ts), int(pico), int(status)) for ts, pico, status in store.execute(
            "SELECT ts, cost_pico, status FROM requests WHERE key_name = ?", (key_name,))]
    finally:
        store.close()


_REFUSAL = re.compile(r"budget of \$([0-9.]+) .*?; \$([0-9.]+) is spent or reserved .*? may cost up to \$([0-9.]+)")


async def part_a(mock: MockUpstream, store_url: str, keys: KeyStore, redis: str, prefix: str) -> None:
    _key, material = keys.create_key(KeySpec(name="a-shared", budgets=[{"usd": "0.10", "window": "day"}]))  # type: ignore[list-item]
    one, two = Replica(config_text(mock, store_url, redis, prefix)), Replica(config_text(mock, store_url, redis, prefix))
    await one.start()
    await two.start()
    rng = random.Random(7)
    bodies = []
    for i in range(200):
        n = rng.randint(5, 300)
        text = " ".join(rng.choice(WORDS) for _ in range(n))
        bodies.append({"model": "bench", "max_tokens": 400,
                       "messages": [{"role": "user", "content": f"[slow 300] {i} {text}"}]})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        answers = await asyncio.gather(*(post(s, (one if i % 2 else two).url, material, b) for i, b in enumerate(bodies)))
    await one.settle()
    await two.settle()
    rows = ledger_rows(store_url, "a-shared")
    settled = sum(Decimal(p) for _, p, _ in rows) / 10**12
    dearest = max(Decimal(p) for _, p, _ in rows) / 10**12
    ok = sum(1 for st, _ in answers if st == 200)
    refused = [b for st, b in answers if st == 429]
    other = [st for st, _ in answers if st not in (200, 429)]
    false_refusals = 0
    for b in refused:
        m = _REFUSAL.search(b["error"]["message"])
        assert m is not None, b
        limit, used, need = (Decimal(x) for x in m.groups())
        if used + need <= limit:
            false_refusals += 1
    over = settled - Decimal("0.10")
    [row] = [u for u in await one.spend.usage() if u["key"] == "a-shared"]
    print("\nA. 200 concurrent requests, one $0.10/day budget, 2 replicas sharing Redis (max_tokens 400, answers 6-301 tokens)")
    print(f"   admitted {ok}, refused {len(refused)}, other statuses {other or 'none'}; ledger rows {len(rows)}")
    print(f"   settled spend ${settled:.6f} (counter says ${row['used']:.6f}, reserved {row['reserved']}); "
          f"over the budget by ${max(over, Decimal(0)):.6f}; dearest single request ${dearest:.6f}")
    print(f"   target: over-spend <= one request's actual cost: {'MET' if over <= dearest else 'MISSED'}")
    print(f"   false refusals (settled + in flight + this request's reservation within the budget): {false_refusals} "
          f"of {len(refused)} -> {'MET' if false_refusals == 0 else 'MISSED'}")
    print(f"   budget used when the dust settled: {settled / Decimal('0.10'):.0%} (requests refused while others' "
          f"reservations were in flight leave room that settles later)")
    await one.stop()
    await two.stop()


def seed_history(store_url: str, key_name: str, total_usd: Decimal, n: int, rng: random.Random) -> None:
    store = open_store(store_url)
    now = time.time()
    outs = [rng.randint(40, 220) for _ in range(n)]
    per = total_usd / n
    store.write([LedgerRecord(request_id=f"hist-{key_name}-{i}", ts=now - 60 - i, protocol="openai",
                              requested_model="bench-large", served_model="bench-large", provider="openai",
                              status=200, outcome="ok", key_name=key_name, input_tokens=300, output_tokens=o,
                              cost=per, counterfactual_cost=per) for i, o in enumerate(outs)])
    store.close()


async def part_b(mock: MockUpstream, store_url: str, keys: KeySpec | Any, redis: str, prefix: str) -> None:
    rng = random.Random(11)
    for name in ("b-agent", "b-newcomer"):
        keys.create_key(KeySpec(name=name, budgets=[{"usd": 50, "window": "month"}]))  # type: ignore[list-item]
    material = {}
    for k in keys.all_keys():
        if k.name in ("b-agent", "b-newcomer"):
            material[k.name] = keys.rotate(k.key_id)[1]
    seed_history(store_url, "b-agent", Decimal("0.10"), 60, rng)
    seed_history(store_url, "b-newcomer", Decimal("0.10"), 3, rng)  # too few rows for a percentile
    rep = await Replica(config_text(mock, store_url, redis, prefix)).start()
    usage = {u["key"]: u for u in await rep.spend.usage()}
    body = {"model": "bench-large", "messages": [{"role": "user", "content": "[slow 300] summarise the design notes"}]}
    results = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        for name in ("b-agent", "b-newcomer"):
            # the newcomer on a traffic class of its own, so no route history stands in for its own
            sent = body if name == "b-agent" else {**body, "metadata": {"route": "fresh"}}
            answers = await asyncio.gather(*(post(s, rep.url, material[name], sent) for _ in range(50)))
            results[name] = sum(1 for st, _ in answers if st == 200)
    await rep.settle()
    limit_cost = Decimal(128000) * 75 / 10**6
    print("\nB. no max_tokens, $50/month budget with $0.10 already spent (rebuilt from the ledger at start), "
          "50 concurrent requests to a model with a 128k output limit ($9.60 at its output price)")
    print(f"   spent at start per the counters: ${usage['b-agent']['used']:.4f} (agent), ${usage['b-newcomer']['used']:.4f} (newcomer)")
    print(f"   key with 60 rows of history (estimate = p99 of its output tokens): admitted {results['b-agent']}/50 "
          f"-> {'MET' if results['b-agent'] == 50 else 'MISSED'}")
    print(f"   key with 3 rows on a new route (too few; the model's output limit is reserved, ${limit_cost:.2f} a request): "
          f"admitted {results['b-newcomer']}/50 (the failure mode the ledger estimate avoids)")
    await rep.stop()


async def part_c(mock: MockUpstream, store_url: str, keys: KeyStore, redis: str, prefix: str, full: bool) -> None:
    span, limit = (60, 600) if full else (6, 60)
    _key, material = keys.create_key(KeySpec(name="c-rpm", limits={"rpm": limit}))  # type: ignore[arg-type]
    extra = f"  rate_window: {span}\n"
    one = await Replica(config_text(mock, store_url, redis, prefix, extra)).start()
    two = await Replica(config_text(mock, store_url, redis, prefix, extra)).start()
    windows = 2 if full else 3
    start = (int(time.time() // span) + 1) * span
    await asyncio.sleep(start - time.time() - 0.5)  # begin half a second before a window opens
    end = start + windows * span + 0.5
    tasks = []
    body = {"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        i = 0
        t = time.time()
        while t < end:
            tasks.append(asyncio.ensure_future(post(s, (one if i % 2 else two).url, material, body)))
            i += 1
            t += 0.05  # 20 requests/s offered
            await asyncio.sleep(max(0.0, t - time.time()))
        answers = await asyncio.gather(*tasks)
    await one.settle()
    await two.settle()
    rows = ledger_rows(store_url, "c-rpm")
    per: dict[int, int] = {}
    for ts, _, status in rows:
        if status == 200:
            per[int(ts // span)] = per.get(int(ts // span), 0) + 1
    full_windows = [per.get(int(start // span) + w, 0) for w in range(windows)]
    refused = sum(1 for st, _ in answers if st == 429)
    scale = "" if full else " (window shortened 10x: 60 per 6 s is 600/min)"
    print(f"\nC. {limit} requests per {span} s{scale}, 2 replicas, 20 requests/s offered ({len(answers)} sent, {refused} refused 429)")
    print(f"   admitted per full window: {full_windows} (limit {limit}) -> "
          f"{'MET' if all(abs(n - limit) <= 1 for n in full_windows) else 'MISSED'} (target within +-1)")
    await one.stop()
    await two.stop()


async def part_d(mock: MockUpstream, store_url: str, keys: KeyStore, redis: str, prefix: str, tmp: Path) -> None:
    print("\nD. a replica restarted mid-window")
    for label, shared, url in (("Redis counters", redis, store_url), ("in-process counters, rebuilt from the ledger", None,
                                                                      f"sqlite:///{tmp}/d-ledger.db")):
        ks = keys if url == store_url else KeyStore(url)
        _key, material = ks.create_key(KeySpec(name="d-restart", budgets=[{"usd": 1, "window": "day"}, {"usd": 5, "window": "24h"}]))  # type: ignore[list-item]
        rep = await Replica(config_text(mock, url, shared, prefix)).start()
        other = await Replica(config_text(mock, url, shared, prefix)).start() if shared else None
        async with aiohttp.ClientSession() as s:
            for i in range(10):
                await post(s, (other or rep).url if i % 2 else rep.url, material,
                           {"model": "bench", "messages": [{"role": "user", "content": f"spend {i} " * 20}]})
        await rep.settle()
        if other is not None:
            await other.settle()
        before = [u["used"] for u in await rep.spend.usage() if u["key"] == "d-restart"]
        await rep.stop()
        rep = await Replica(config_text(mock, url, shared, prefix)).start()
        after = [u["used"] for u in await rep.spend.usage() if u["key"] == "d-restart"]
        same = all(abs(a - b) < 1e-9 for a, b in zip(before, after, strict=True)) and before[0] > 0
        print(f"   {label}: used before ${before[0]:.6f} (day) ${before[1]:.6f} (rolling 24h); after restart "
              f"${after[0]:.6f} ${after[1]:.6f} -> {'MET' if same else 'MISSED'}")
        await rep.stop()
        if other is not None:
            await other.stop()
        if ks is not keys:
            ks.close()


async def part_e(mock: MockUpstream, store_url: str, keys: KeyStore, redis: str, prefix: str) -> None:
    from thrifty.spend.keys import TeamSpec
    from thrifty.types import Context

    keys.put_team(TeamSpec.model_validate({"name": "e-team", "budgets": [{"usd": 10000, "window": "day"}],
                                           "limits": {"rpm": 10**8}}))
    _key, material = keys.create_key(KeySpec.model_validate({
        "name": "e-key", "team": "e-team", "tags": {"feature": "e"},
        "budgets": [{"usd": 10000, "window": "day"}, {"usd": 10**5, "window": "month"}, {"usd": 10000, "window": "24h"}],
        "limits": {"rpm": 10**8, "tpm": 10**10, "concurrency": 10**5}}))
    extra = '  tags: {"feature=e": [{usd: 10000, window: day}]}\n'
    body = {"model": "bench", "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}
    print("\nE. admission cost per request, function level (authenticate + admit; settlement runs after the answer), median of 3000 interleaved")
    for label, shared in (("in-process counters", None), ("Redis counters", redis)):
        rep = await Replica(config_text(mock, store_url, shared, prefix, extra)).start()
        spend, config = rep.spend, rep.spend.config

        async def one(presented: str | None, spend: SpendControl = spend, config: Any = config) -> float:
            t0 = time.perf_counter()
            principal = spend.authenticate(presented) if presented else None
            ctx = Context(protocol="openai", body=body, config=config, key_name=principal.name if principal else None,
                          requested_model="bench")
            await spend.admit(ctx, principal)
            took = (time.perf_counter() - t0) * 1000  # settlement runs after the answer, off its path
            row = LedgerRecord(request_id=ctx.request_id, ts=time.time(), protocol="openai", requested_model="bench",
                               served_model="bench", provider="openai", status=200, outcome="ok",
                               input_tokens=20, output_tokens=8, cost=Decimal("0.0001"))
            spend.settle(ctx, row)
            await spend.drain()
            return took

        on: list[float] = []
        off: list[float] = []
        for i in range(3200):
            (on if i % 2 else off).append(await one(material if i % 2 else None))
        on, off = sorted(on[100:]), sorted(off[100:])
        med_on, med_off = on[len(on) // 2], off[len(off) // 2]
        note = ""
        if shared:
            import redis.asyncio as aioredis

            client = aioredis.from_url(shared)
            pings = []
            for _ in range(1000):
                t0 = time.perf_counter()
                await client.ping()
                pings.append((time.perf_counter() - t0) * 1000)
            await client.aclose()
            note = f"; a bare PING round trip to this Redis takes {sorted(pings)[500]:.3f} ms"
        print(f"   {label}: with 8 meters {med_on:.3f} ms, without {med_off:.3f} ms: adds {med_on - med_off:.3f} ms "
              f"(target <= 0.3 ms) -> {'MET' if med_on - med_off <= 0.3 else 'MISSED'}{note}")
        await rep.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis both replicas share")
    parser.add_argument("--full-minute", action="store_true", help="part C with real 60 s windows (about 2.5 min)")
    parser.add_argument("--parts", default="ABCDE")
    args = parser.parse_args()
    import redis as redis_lib

    prefix = f"bench:spend:{uuid.uuid4().hex[:10]}:"
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-budgets-"))
    store_url = f"sqlite:///{tmp}/ledger.db"
    mock = await MockUpstream().start()
    keys = KeyStore(store_url)
    client = redis_lib.Redis.from_url(args.redis)
    try:
        client.ping()
    except Exception as exc:
        sys.exit(f"this benchmark needs the Redis at {args.redis}: {exc}")
    print(f"spend-control benchmark: Redis {args.redis} (prefix {prefix}), ledger {store_url}")
    try:
        if "A" in args.parts:
            await part_a(mock, store_url, keys, args.redis, prefix)
        if "B" in args.parts:
            await part_b(mock, store_url, keys, args.redis, prefix)
        if "C" in args.parts:
            await part_c(mock, store_url, keys, args.redis, prefix, args.full_minute)
        if "D" in args.parts:
            await part_d(mock, store_url, keys, args.redis, prefix, tmp)
        if "E" in args.parts:
            await part_e(mock, store_url, keys, args.redis, prefix)
    finally:
        keys.close()
        await mock.stop()
        for name in client.scan_iter(match=f"{prefix}*"):
            client.delete(name)
    print("\nAdmission cost (keys + budgets + rate limits on vs off): python benchmarks/gateway_overhead.py --spend")


if __name__ == "__main__":
    asyncio.run(main())
