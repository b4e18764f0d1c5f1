"""The response stores: memory LRU, SQLite (alone and behind memory), and the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.cache.stores import (
    CachedResponse,
    MemoryStore,
    RedisStore,
    ResponseStore,
    SQLiteStore,
    TieredStore,
    default_sqlite_path,
    open_store,
)
from thrifty.types import Usage

REDIS_URL = "redis://127.0.0.1:6379/0"


def entry(text: str = "hello", *, route: str = "default", tenant: str = "default", **tags: str) -> CachedResponse:
    return CachedResponse(
        protocol="openai",
        body={"choices": [{"message": {"content": text}}]},
        usage=Usage(input_tokens=12, output_tokens=3),
        served_model="gpt-test",
        provider="mock",
        cost=Decimal("0.000123456789"),
        savings={"compress": Decimal("0.00001")},
        tenant=tenant,
        route=route,
        tags=tags,
    )


@pytest.fixture(params=["memory", "sqlite", "tiered", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseStore]:
    kind = request.param
    made: ResponseStore
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SQLiteStore(tmp_path / "cache.db")
    elif kind == "tiered":
        made = TieredStore(MemoryStore(), SQLiteStore(tmp_path / "cache.db"))
    else:
        made = RedisStore(REDIS_URL, prefix=f"thrifty-test:{uuid.uuid4().hex}:", budget_ms=3000)
    yield made
    await made.clear()
    await made.close()


async def test_round_trip_keeps_money_exact(store: ResponseStore) -> None:
    await store.set("k1", entry(), ttl=60)
    got = await store.get("k1")
    assert got is not None
    assert got.body == entry().body
    assert got.cost == Decimal("0.000123456789") and isinstance(got.cost, Decimal)
    assert got.usage.input_tokens == 12 and got.savings == {"compress": Decimal("0.00001")}
    assert await store.get("other") is None


async def test_ttl_expiry(store: ResponseStore) -> None:
    await store.set("short", entry(), ttl=0.15)
    await store.set("long", entry(), ttl=60)
    assert await store.get("short") is not None
    await asyncio.sleep(0.3)
    assert await store.get("short") is None
    assert await store.get("long") is not None


async def test_invalidation_by_key_route_tag_tenant(store: ResponseStore) -> None:
    await store.set("a", entry(route="chat", feature="faq"), ttl=60)
    await store.set("b", entry(route="chat", feature="search"), ttl=60)
    await store.set("c", entry(route="batch", feature="faq", tenant="acme"), ttl=60)
    await store.set("d", entry(route="batch", tenant="acme"), ttl=60)

    assert await store.delete("a") == 1
    assert await store.get("a") is None and await store.get("b") is not None

    assert await store.delete_where(tags={"feature": "faq"}) == 1  # only c is left with it
    assert await store.get("c") is None and await store.get("d") is not None

    assert await store.delete_where(route="chat") == 1
    assert await store.get("b") is None

    assert await store.delete_where(tenant="acme") == 1
    assert await store.get("d") is None


async def test_clear(store: ResponseStore) -> None:
    for i in range(5):
        await store.set(f"k{i}", entry(), ttl=None)
    assert await store.clear() == 5
    assert all([await store.get(f"k{i}") is None for i in range(5)])


async def test_memory_lru_is_bounded_by_entries_and_bytes() -> None:
    by_count = MemoryStore(max_entries=3)
    for i in range(4):
        await by_count.set(f"k{i}", entry(), ttl=None)
        if i == 1:
            await by_count.get("k0")  # k0 is now the most recently used
    assert len(by_count) == 3 and await by_count.get("k1") is None and await by_count.get("k0") is not None

    size = len(entry("x" * 1000).to_json())
    by_bytes = MemoryStore(max_bytes=size * 2 + 10)
    for i in range(3):
        await by_bytes.set(f"k{i}", entry("x" * 1000), ttl=None)
    assert len(by_bytes) == 2 and by_bytes.bytes <= by_bytes.max_bytes
    assert await by_bytes.get("k0") is None


async def test_sqlite_survives_a_restart_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    first = SQLiteStore(path)
    await first.set("k", entry("persisted"), ttl=60)
    await first.close()
    second = TieredStore(MemoryStore(), SQLiteStore(path))
    got = await second.get("k")
    assert got is not None and got.body["choices"][0]["message"]["content"] == "persisted"
    mode = second.disk._run("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    await second.close()


async def test_memory_tier_notices_invalidation_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    server = TieredStore(MemoryStore(), SQLiteStore(path), check_interval=0.05)
    await server.set("k", entry(), ttl=60)
    assert await server.get("k") is not None  # now hot in memory
    other = SQLiteStore(path)  # e.g. `thrifty cache clear` in another process
    assert await other.clear() == 1
    await asyncio.sleep(0.1)
    assert await server.get("k") is None
    await other.close()
    await server.close()


def test_store_urls(tmp_path: Path) -> None:
    assert default_sqlite_path("sqlite:////var/lib/thrifty/ledger.db") == Path("/var/lib/thrifty/ledger.cache.db")
    assert default_sqlite_path("sqlite:///thrifty.db") == Path("thrifty.cache.db")
    assert default_sqlite_path("postgresql://localhost/test") == Path("thrifty.cache.db")
    assert isinstance(open_store("memory"), MemoryStore)
    tiered = open_store(f"sqlite:///{tmp_path}/c.db")
    assert isinstance(tiered, TieredStore) and tiered.disk.path == f"{tmp_path}/c.db"
    assert isinstance(open_store("redis://127.0.0.1:6379/0"), RedisStore)
    with pytest.raises(ValueError, match="unknown cache store"):
        open_store("mongodb://nope")


async def test_redis_indexes_expire_with_their_longest_lived_entry() -> None:
    store = RedisStore(REDIS_URL, prefix=f"thrifty-test:{uuid.uuid4().hex}:", budget_ms=3000)
    await store.set("short", entry(route="r"), ttl=5)
    await store.set("long", entry(route="r"), ttl=50)
    await store.set("shorter", entry(route="r"), ttl=1)
    ttl_ms = await store.redis.pttl(f"{store.prefix}route:r")
    assert 45_000 < ttl_ms <= 50_000
    await store.clear()
    await store.close()


async def test_sqlite_purges_expired_rows_as_it_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "cache.db", purge_every=10)
    for i in range(5):
        await store.set(f"old{i}", entry(), ttl=0.05)
    await asyncio.sleep(0.1)
    for i in range(5):
        await store.set(f"new{i}", entry(), ttl=60)
    count = store._run("SELECT count(*) FROM response_cache").fetchone()[0]
    assert count == 5
    await store.close()
