"""The in-process vector index: nearest entries, per tenant and namespace, with TTL and delete."""

from __future__ import annotations

import threading

import numpy as np

from thrifty.cache.index import InProcessIndex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, seed: int, eps: float = 0.05) -> np.ndarray:
    w = v + eps * unit(seed)
    return w / np.linalg.norm(w)


def test_finds_the_nearest_entry_first() -> None:
    ix = InProcessIndex()
    for i in range(200):
        ix.add("t", "ns", f"q{i}", unit(i), {"answer": i})
    hits = ix.search("t", "ns", near(unit(42), 999), k=3)
    assert hits[0].entry.payload == {"answer": 42} and hits[0].entry.question == "q42"
    assert hits[0].score > 0.99 and hits[0].score >= hits[1].score >= hits[2].score
    assert len(ix) == 200


def test_min_score_filters_weak_candidates() -> None:
    ix = InProcessIndex()
    ix.add("t", "ns", "q", unit(1), {})
    assert ix.search("t", "ns", unit(2), k=5, min_score=0.5) == []
    assert len(ix.search("t", "ns", unit(1), k=5, min_score=0.5)) == 1


def test_a_tenant_never_sees_another_tenants_entries() -> None:
    ix = InProcessIndex()
    v = unit(7)
    ix.add("tenant-b", "ns", "secret question", v, {"answer": "b's answer"})
    assert ix.search("tenant-a", "ns", v) == []
    assert ix.search("tenant-b", "other-namespace", v) == []
    assert [h.entry.payload for h in ix.search("tenant-b", "ns", v)] == [{"answer": "b's answer"}]


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    ix = InProcessIndex(clock=clock)
    v = unit(3)
    ix.add("t", "ns", "short", v, {"n": 1}, ttl=10)
    ix.add("t", "ns", "forever", near(v, 4), {"n": 2})
    clock.now += 9.9
    assert {h.entry.question for h in ix.search("t", "ns", v)} == {"short", "forever"}
    clock.now += 0.2
    assert [h.entry.question for h in ix.search("t", "ns", v)] == ["forever"]
    assert len(ix) == 1  # the expired one was dropped as it was met


def test_sweep_drops_every_expired_entry() -> None:
    clock = Clock()
    ix = InProcessIndex(clock=clock)
    for i in range(5):
        ix.add("t", f"ns{i}", "q", unit(i), {}, ttl=1)
    ix.add("t", "keep", "q", unit(9), {}, ttl=100)
    clock.now += 2
    assert ix.sweep() == 5 and len(ix) == 1


def test_delete_one_entry_a_namespace_or_a_tenant() -> None:
    ix = InProcessIndex()
    a = ix.add("t", "ns1", "a", unit(1), {})
    ix.add("t", "ns1", "b", unit(2), {})
    ix.add("t", "ns2", "c", unit(3), {})
    ix.add("u", "ns1", "d", unit(4), {})
    assert ix.delete("t", "ns1", key=a.key) == 1
    assert [h.entry.question for h in ix.search("t", "ns1", unit(1), min_score=0.9)] == []
    assert ix.delete("t", "ns1") == 1
    assert ix.delete("t") == 1
    assert len(ix) == 1 and ix.search("u", "ns1", unit(4))[0].entry.question == "d"
    assert ix.clear() == 1 and len(ix) == 0


def test_a_full_partition_forgets_its_oldest_entries() -> None:
    ix = InProcessIndex(max_entries=3)
    for i in range(5):
        ix.add("t", "ns", f"q{i}", unit(i), {})
    assert len(ix) == 3
    assert ix.search("t", "ns", unit(0), min_score=0.9) == []
    assert ix.search("t", "ns", unit(4), min_score=0.9)[0].entry.question == "q4"


def test_bulk_add_and_concurrent_use_from_threads() -> None:
    ix = InProcessIndex()
    vecs = np.stack([unit(i) for i in range(500)])
    ix.add_many("t", "ns", [f"q{i}" for i in range(500)], vecs, [{"i": i} for i in range(500)])
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(50):
                ix.add("t", "ns", f"w{offset}-{i}", unit(10_000 + offset * 100 + i), {})
                hit = ix.search("t", "ns", vecs[(offset * 50 + i) % 500], k=1)[0]
                assert hit.entry.payload == {"i": (offset * 50 + i) % 500}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(ix) == 700


def test_churn_rebuilds_the_graph_and_keeps_answering() -> None:
    clock = Clock()
    ix = InProcessIndex(max_entries=50, clock=clock)
    for i in range(3000):  # 2,950 evictions: the graph is rebuilt from the live entries on the way
        ix.add("t", "ns", f"q{i}", unit(i), {"i": i}, ttl=5)
    part = ix._parts[("t", "ns")]
    assert len(ix) == 50 and part.removed < 1100 and len(part.graph) <= 1100
    assert ix.search("t", "ns", unit(2999), k=1)[0].entry.payload == {"i": 2999}
    assert ix.search("t", "ns", unit(10), min_score=0.9) == []
