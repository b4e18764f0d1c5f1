"""The per-input embedding cache on 1,000 requests (the issue's target workload).

1,000 `/v1/embeddings` requests of 1-64 inputs each, half of the inputs repeats of inputs
seen before, go through a real thrifty in front of the mock upstream. Printed: how many
inputs the upstream received against how many distinct inputs there were (the target:
only unseen inputs go upstream, each once), how many returned vectors differ from a direct
call to the upstream for the same input (target: 0), and the cost and saving the ledger
recorded. Run: `PYTHONPATH=src python benchmarks/embedding_cache.py [--requests 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from decimal import Decimal

import httpx
from aiohttp import web

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing.mock_upstream import MockUpstream

CONFIG = """
store: sqlite:///{tmp}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - name: emb
    provider: openai
    model: text-embedding-3-small
    base_url: {base}/v1
    price: {{input: 0.02, output: 0}}
"""


def workload(requests: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    seen: list[str] = []
    batches = []
    for _ in range(requests):
        batch = []
        for _ in range(rng.randint(1, 64)):
            if seen and rng.random() < 0.5:
                batch.append(rng.choice(seen))
            else:
                text = f"passage {len(seen)}: " + " ".join(f"w{rng.randint(0, 999)}" for _ in range(rng.randint(3, 40)))
                seen.append(text)
                batch.append(text)
        batches.append(batch)
    return batches


async def run(requests: int, seed: int) -> None:
    batches = workload(requests, seed)
    upstream = await MockUpstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(parse_config(CONFIG.format(tmp=tmp, base=upstream.base_url)))
        runner = web.AppRunner(create_app(gateway), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/embeddings"
        answers: list[list[list[float]]] = []
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=60) as http:
            for batch in batches:
                r = await http.post(url, json={"model": "emb", "input": batch})
                r.raise_for_status()
                answers.append([d["embedding"] for d in r.json()["data"]])
            elapsed = time.perf_counter() - start
            sent = [x for body in upstream.bodies for x in body["input"]]
            distinct = sorted({x for batch in batches for x in batch})
            direct: dict[str, list[float]] = {}
            for i in range(0, len(distinct), 512):  # the same upstream, called directly
                part = distinct[i:i + 512]
                r = await http.post(upstream.base_url + "/v1/embeddings", json={"model": "x", "input": part})
                direct.update(zip(part, [d["embedding"] for d in r.json()["data"]], strict=True))
        wrong = sum(1 for batch, vectors in zip(batches, answers, strict=True)
                    for text, vector in zip(batch, vectors, strict=True) if direct[text] != vector)
        assert gateway.ledger is not None
        gateway.ledger.flush()
        rows = list(gateway.ledger.store.rows())
        cost = sum(Decimal(r["cost_pico"]) for r in rows) / Decimal(10**12)
        counterfactual = sum(Decimal(r["counterfactual_pico"]) for r in rows) / Decimal(10**12)
        saved = sum(Decimal(json.loads(r["savings"]).get("embedding_cache", 0)) for r in rows)
        await runner.cleanup()
    await upstream.stop()
    total = sum(len(b) for b in batches)
    print(f"requests: {len(batches)}, inputs: {total}, distinct inputs: {len(distinct)} "
          f"({1 - len(distinct) / total:.1%} repeats)")
    print(f"inputs sent upstream: {len(sent)} ({len(set(sent))} distinct; target: {len(distinct)}, each once)")
    print(f"returned vectors that differ from a direct upstream call: {wrong} of {total} (target 0)")
    print(f"ledger rows: {len(rows)}; cost ${cost:.8f}, counterfactual ${counterfactual:.8f}, "
          f"saved by embedding_cache ${saved:.8f} ({saved / counterfactual:.1%})")
    print(f"wall time {elapsed:.1f} s ({elapsed / len(batches) * 1000:.1f} ms per request, loopback, shared machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.seed))


if __name__ == "__main__":
    main()
