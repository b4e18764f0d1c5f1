"""The semantic cache on PostgreSQL + pgvector: the same contract as the in-process index,
shared by every replica that points at the database."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from thrifty.cache.index import InProcessIndex
from thrifty.cache.pgvector_index import PgVectorIndex
from thrifty.cache.semantic import SemanticCache
from thrifty.embed import shared_embedder

from .exact_helpers import COST, FakeUpstream, gateway, openai_ctx
from .test_semantic import PARAPHRASE, Q, settle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def index(pgvector_url: str) -> PgVectorIndex:
    idx = PgVectorIndex(pgvector_url, max_entries=3, clock=Clock())
    idx.clear()
    return idx


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def test_search_finds_the_nearest_entries_of_the_tenant_and_namespace_only(index: PgVectorIndex) -> None:
    a, b = unit(1), unit(2)
    index.add("t1", "ns", "question a", a, {"answer": "A"})
    index.add("t1", "ns", "question b", b, {"answer": "B"})
    index.add("t2", "ns", "question a", a, {"answer": "other tenant"})
    index.add("t1", "other", "question a", a, {"answer": "other namespace"})
    hits = index.search("t1", "ns", a, k=5)
    assert [h.entry.payload["answer"] for h in hits] == ["A", "B"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(hits[0].entry.vector, a, atol=1e-6)  # the verifier reads the stored vector
    assert index.has("t1", "ns") and not index.has("t3", "ns")


def test_ttl_cap_and_delete(index: PgVectorIndex) -> None:
    clock = index.clock
    assert isinstance(clock, Clock)
    index.add("t", "ns", "old", unit(3), {"n": 0}, ttl=10)
    clock.now += 11
    assert index.search("t", "ns", unit(3)) == [] and not index.has("t", "ns")
    assert index.sweep() == 1
    for i in range(5):  # max_entries is 3: the oldest give way
        index.add("t", "ns", f"q{i}", unit(10 + i), {"n": i})
    assert sorted(h.entry.payload["n"] for h in index.search("t", "ns", unit(12), k=10, min_score=-1)) == [2, 3, 4]
    assert index.delete("t", "ns") == 3 and len(index) == 0


def test_same_answers_as_the_in_process_index(pgvector_url: str) -> None:
    """On the same data the two indexes return the same neighbours (the HNSW scan is exact
    at this size), so the verifier sees the same candidates."""
    memory = InProcessIndex()
    embed = shared_embedder()
    questions = [f"How do I {verb} my {thing}?" for verb in ("reset", "change", "recover", "update")
                 for thing in ("router password", "email address", "bank pin", "phone number")]
    vectors = embed.embed(questions)
    big = PgVectorIndex(pgvector_url, max_entries=1000)
    big.clear()
    for q, v in zip(questions, vectors, strict=True):
        memory.add("t", "ns", q, v, {"q": q})
        big.add("t", "ns", q, v, {"q": q})
    for probe in ("How can I reset the password of my router?", "I forgot my bank PIN, how do I recover it?"):
        v = embed.embed_one(probe)
        assert [h.entry.question for h in big.search("t", "ns", v, k=4)] == [
            h.entry.question for h in memory.search("t", "ns", v, k=4)
        ]
    big.close()


async def test_two_replicas_share_the_semantic_cache(pgvector_url: str) -> None:
    """An answer cached through one gateway is served, verified, through another."""
    tenant_store = f'store: "sqlite:///:memory:"\nsemantic_cache: {{enabled: true, index: "{pgvector_url}"}}\n'
    first, second = SemanticCache.build(gateway(tenant_store)), SemanticCache.build(gateway(tenant_store))
    assert first is not None and second is not None
    first.index.clear()
    upstream = FakeUpstream(delay=0)
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    ctx = openai_ctx(first.gateway, Q)
    ctx.tenant = tenant
    await first.handle(ctx, upstream)
    await settle(first)
    again = openai_ctx(second.gateway, PARAPHRASE)
    again.tenant = tenant
    hit = await second.handle(again, upstream)
    assert upstream.calls == 1 and hit.provider == "semantic_cache"
    assert again.savings == {"semantic_cache": COST}
    stranger = openai_ctx(second.gateway, PARAPHRASE)  # another tenant never sees it
    await second.handle(stranger, upstream)
    assert upstream.calls == 2
    await first.aclose()
    await second.aclose()
