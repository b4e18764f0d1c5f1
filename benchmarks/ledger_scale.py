"""How big a ledger row is, and how the ledger's queries and retention behave as it grows.

    .venv/bin/python benchmarks/ledger_scale.py                    # 1,000,000 rows in PostgreSQL and SQLite
    .venv/bin/python benchmarks/ledger_scale.py --rows 200000 --only sqlite

1. Real rows first: 300 requests through a real gateway (mock upstream; plain, streamed,
   cache hits, a dedup burst, tags and a virtual-key-like `key_name`) are written by the
   gateway's own ledger writer. Their stored size is measured per column (PostgreSQL's
   `pg_column_size`, SQLite's `length`).
2. Then the table is grown to `--rows` by copying those real rows with new ids, times spread
   over 90 days in time order (as a gateway appends them), 200 keys, 20 tenants and 12 routes,
   written through the store's own `write` in batches, so the bytes per row and the indexes
   are what the gateway produces.
3. Timed at that size, each query median of 5 (after one warm-up): the queries `thrifty spend`,
   the dashboard (`/v1/thrifty/stats`), budget rebuild at start and the output estimate of
   spend admission run. Then `thrifty db prune` removes the oldest 30 days, timed.

LiteLLM's spend rows are about 6.3 KB, 65% of it duplicated static data (its issue #41499);
a cleanup over 11 M rows took 429 s (#9201). Those figures are theirs, not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from thrifty.ledger.record import LedgerRecord  # noqa: E402
from thrifty.ledger.store import LedgerStore, open_store  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
DAY = 86400.0


async def real_rows(tmp: Path) -> list[LedgerRecord]:
    """300 requests through a real gateway on SQLite; the rows its writer stored."""
    import aiohttp

    from tests.conftest import free_port, mock_config
    from thrifty.config import parse_config
    from thrifty.gateway import Gateway
    from thrifty.ledger.store import SQLiteStore
    from thrifty.server.app import create_app
    from thrifty.server.timeouts import ThriftyRunner
    from thrifty.testing.mock_upstream import MockUpstream

    mock = await MockUpstream().start()
    cfg = parse_config(mock_config(mock, tmp, "cache: {enabled: true}\ndedup: {enabled: true}\n"))
    gateway = Gateway(cfg)
    runner = ThriftyRunner(create_app(gateway), access_log=None)
    await runner.setup()
    port = free_port()
    from aiohttp import web

    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def one(i: int) -> None:
                model = "claude-test" if i % 5 == 0 else "gpt-test"
                text = f"repeat {i % 40}" if i % 3 == 0 else f"question {i}: how do I rotate my API keys safely?"
                if i % 50 == 0:
                    text = "burst [slow 200]"
                path = "/v1/messages" if model == "claude-test" else "/v1/chat/completions"
                body: dict[str, Any] = {"model": model, "max_tokens": 200, "stream": i % 4 == 1,
                                        "messages": [{"role": "user", "content": text}]}
                headers = {"X-Thrifty-Tags": f"feature=search,team=t{i % 4}"}
                async with http.post(url + path, json=body, headers=headers) as r:
                    await r.read()

            await asyncio.gather(*(one(i) for i in range(300)))
    finally:
        await runner.cleanup()
        await mock.stop()
    store = SQLiteStore(str(tmp / "ledger.db"))
    try:
        from thrifty.ledger.record import COLUMNS

        rows = store.execute(f"SELECT {', '.join(COLUMNS)} FROM requests")
    finally:
        store.close()
    return [_record(dict(zip(COLUMNS, r, strict=True))) for r in rows]


def _record(row: dict[str, Any]) -> LedgerRecord:
    """A stored row read back into the record the writer takes."""
    from decimal import Decimal

    import orjson

    from thrifty.ledger.record import from_pico

    return LedgerRecord(
        request_id=row["request_id"], ts=row["ts"], protocol=row["protocol"],
        requested_model=row["requested_model"], served_model=row["served_model"], provider=row["provider"],
        status=row["status"], outcome=row["outcome"], key_name=row["key_name"], tenant=row["tenant"],
        route=row["route"], feature=row["feature"], task=row["task"], tags=orjson.loads(row["tags"]),
        error=row["error"], cache=row["cache"], answered_by=row["answered_by"],
        input_tokens=row["input_tokens"], cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"], cache_write_1h_tokens=row["cache_write_1h_tokens"],
        output_tokens=row["output_tokens"], reasoning_tokens=row["reasoning_tokens"],
        usage_estimated=bool(row["usage_estimated"]), cost=from_pico(row["cost_pico"]),
        counterfactual_cost=from_pico(row["counterfactual_pico"]),
        savings={k: Decimal(v) for k, v in orjson.loads(row["savings"]).items()},
        tokens_saved=orjson.loads(row["tokens_saved"]), latency_ms=row["latency_ms"], ttfb_ms=row["ttfb_ms"],
        stream=bool(row["stream"]), finish_reason=row["finish_reason"], extra=orjson.loads(row["extra"]),
    )  # fmt: skip


def grow(store: LedgerStore, templates: list[LedgerRecord], n: int, now: float, label: str) -> None:
    rng = random.Random(11)
    batch = 5000
    with tqdm(total=n, desc=f"{label}: writing rows", unit="row", unit_scale=True) as bar:
        for start in range(0, n, batch):
            out = []
            for _ in range(min(batch, n - start)):
                r = copy.copy(rng.choice(templates))
                r.request_id = "req_" + uuid.UUID(int=rng.getrandbits(128)).hex
                # a ledger is appended in time order: 90 days, oldest first, a little jitter
                r.ts = now - 90 * DAY * (1 - (start + len(out)) / n) - rng.random()
                r.key_name = f"key-{rng.randrange(200)}"
                r.tenant = f"tenant-{rng.randrange(20)}"
                r.route = f"route-{rng.randrange(12)}"
                out.append(r)
            store.write(out)
            bar.update(len(out))


def timed(fn: Callable[[], Any], repeat: int = 5) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def measure(store: LedgerStore, label: str, now: float, size_sql: str, total_bytes: Callable[[], int]) -> None:
    from thrifty.server.stats import collect

    per_row = store.execute(size_sql)[0][0]
    print(f"\n{label}: {store.count():,} rows; stored row {float(per_row):,.0f} bytes on average (columns); "
          f"table with indexes {total_bytes() / store.count():,.0f} bytes a row")
    queries: list[tuple[str, Callable[[], Any]]] = [
        ("thrifty spend --since 24h --by key", lambda: store.spend("key", now - DAY)),
        ("thrifty spend --since 30d --by model", lambda: store.spend("model", now - 30 * DAY)),
        ("thrifty spend --by day (90 days)", lambda: store.spend("day")),
        ("  + its savings by lever (90 days)", lambda: store.savings_by_lever()),
        ("dashboard stats, last 24 h", lambda: collect(store, now - DAY, now)),
        ("budget rebuild: one key's month", lambda: store.execute(
            "SELECT ts, cost_pico FROM requests WHERE ts >= ? AND key_name IN (?)", (now - 30 * DAY, "key-7"))),
        ("output estimate: a route's last 1,000", lambda: store.execute(
            "SELECT output_tokens FROM requests WHERE route = ? AND status < 400 AND answered_by IS NULL "
            "ORDER BY ts DESC LIMIT 1000", ("route-3",))),
    ]
    for name, fn in queries:
        print(f"  {name:<42} {timed(fn):9.1f} ms (median of 5)")
    doomed = store.count_before(now - 60 * DAY)
    t0 = time.perf_counter()
    with tqdm(total=doomed, desc=f"{label}: db prune --older-than 60d", unit="row", unit_scale=True) as bar:
        deleted = store.prune(now - 60 * DAY, progress=bar.update)
    took = time.perf_counter() - t0
    print(f"  db prune --older-than 60d: {deleted:,} rows in {took:.1f} s ({deleted / took:,.0f} rows/s); "
          f"{store.count():,} left")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["postgresql", "sqlite"])
    ap.add_argument("--pg", default=PG, help="a PostgreSQL server (a database of this run's own is made there)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-ledger-scale-"))
    templates = asyncio.run(real_rows(tmp))
    now = time.time()
    print(f"{len(templates)} real rows from the gateway (plain, streamed, cached, deduplicated, two protocols)")

    if args.only in (None, "sqlite"):
        path = tmp / "scale.db"
        sq = open_store(f"sqlite:///{path}")
        try:
            grow(sq, templates, args.rows, now, "SQLite")
            cols = " + ".join(f"COALESCE(length({c}), 0)" for c in _columns())
            measure(sq, "SQLite", now, f"SELECT AVG({cols}) FROM requests", lambda: os.path.getsize(path))
        finally:
            sq.close()

    if args.only in (None, "postgresql"):
        import psycopg

        name = f"ledger_scale_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = args.pg.rsplit("/", 1)[0] + f"/{name}"
        pg = open_store(url)
        try:
            grow(pg, templates, args.rows, now, "PostgreSQL")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE requests")

            def total() -> int:
                return int(pg.execute("SELECT pg_total_relation_size('requests')")[0][0])

            measure(pg, "PostgreSQL", now, "SELECT AVG(pg_column_size(requests.*)) FROM requests", total)
        finally:
            pg.close()
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _columns() -> tuple[str, ...]:
    from thrifty.ledger.record import COLUMNS

    return COLUMNS


if __name__ == "__main__":
    main()
