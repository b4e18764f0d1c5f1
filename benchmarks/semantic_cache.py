"""Semantic cache benchmark: is a hit right, and how long does a lookup take?

    PYTHONPATH=src python benchmarks/semantic_cache.py [--entries 100000] [--queries 400]

1. Correctness on the QQP `test` split (never seen by the verifier's training, see
   thrifty/cache/pairdata.py): text_a is the cached question, text_b the new one; a hit is
   right when the pair is labelled a duplicate. Precision and recall of hits for cosine
   >= 0.8 (the GPTCache / LiteLLM / Bifrost default), cosine >= 0.95, and thrifty (index
   candidate with cosine >= min_cosine, then the verifier with its shipped threshold).
2. Lookup latency with `--entries` cached entries in one tenant's namespace: the stage's
   own lookup (embed the question with a fresh embedder, so no embedding is cached, search
   the HNSW index, verify the candidates). The index holds every real QQP question outside
   the test split, topped up to `--entries` with synthetic vectors (normalised mixes of two
   real ones plus noise), since embedding 100,000 distinct texts here takes too long.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from thrifty.cache.index import InProcessIndex
from thrifty.cache.pairdata import embed_cached, load_qqp
from thrifty.cache.semantic import SemanticCache, SemanticCacheSettings, extract_question
from thrifty.cache.verifier import default_verifier
from thrifty.config import parse_config
from thrifty.embed import Embedder
from thrifty.gateway import Gateway


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


def correctness(min_cosine: float) -> None:
    pairs = [p for p in load_qqp() if p.split == "test"]
    a, b = [p.text_a for p in pairs], [p.text_b for p in pairs]
    labels = np.array([p.label for p in pairs])
    emb = embed_cached(a + b)
    ea, eb = emb[: len(a)], emb[len(a) :]
    cos = np.einsum("ij,ij->i", ea, eb)
    verifier = default_verifier()
    verdicts = verifier.decide(a, b, ea, eb)
    accepted = np.array([v.same for v in verdicts])
    print(f"QQP test split: {len(pairs)} pairs, {int(labels.sum())} duplicates (held out from training)")
    print(f"verifier threshold {verifier.threshold:.4f} (chosen on val: {verifier.meta.get('val_precision')} precision)")
    report("cosine >= 0.80", cos >= 0.80, labels)
    report("cosine >= 0.95", cos >= 0.95, labels)
    report(f"thrifty (cos >= {min_cosine} + verifier)", (cos >= min_cosine) & accepted, labels)


def latency(entries: int, queries: int, top_k: int) -> None:
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

    def question(text: str) -> object:
        return extract_question("openai", {**template, "messages": [{"role": "user", "content": text}]}, settings)

    namespace = question("anything").namespace  # type: ignore[attr-defined]
    index = InProcessIndex(max_entries=entries)
    started = time.perf_counter()
    index.add_many("tenant", namespace, texts, vectors, [{"body": {}} for _ in texts], threads=2)
    print(f"index: {len(index)} entries in one namespace, built in {time.perf_counter() - started:.0f}s")

    embedder = Embedder()  # fresh: nothing of the queries is in its LRU
    cache = SemanticCache(gw, index, default_verifier(), embedder.embed_one)
    embedder.embed_one("warm up the session")
    total, embed_only, hits = [], [], 0
    for p in test[:queries]:
        q = question(p.text_b)
        t0 = time.perf_counter()
        _, hit = cache._lookup("tenant", q, settings, False)  # type: ignore[arg-type]
        total.append((time.perf_counter() - t0) * 1000)
        hits += hit is not None
        t0 = time.perf_counter()
        embedder.embed([p.text_b + " ?"])
        embed_only.append((time.perf_counter() - t0) * 1000)
    total.sort()
    p50, p99 = statistics.median(total), total[min(len(total) - 1, int(0.99 * len(total)))]
    print(f"lookup incl. embedding, {len(total)} queries, top_k {top_k}: p50 {p50:.2f} ms  p99 {p99:.2f} ms  ({hits} hits)")
    print(f"  of which embedding alone: p50 {statistics.median(embed_only):.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--top-k", type=int, default=SemanticCacheSettings().top_k)
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    correctness(SemanticCacheSettings().min_cosine)
    if not args.skip_latency:
        latency(args.entries, args.queries, args.top_k)


if __name__ == "__main__":
    main()
