"""Where cached responses live: memory, SQLite, Redis, behind one `ResponseStore` interface.

The default is an in-memory LRU in front of a SQLite file (one process, survives restarts);
Redis is for several replicas sharing one cache. The store is picked by URL in config
(`cache.store`), never in code paths. SQLite work runs in a thread so that the event loop
never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from thrifty.migrations import Migration, migrate
from thrifty.types import Usage


@dataclass
class CachedResponse:
    """A complete answer as the client saw it, and what it cost to get it."""

    protocol: str
    body: dict[str, Any]
    usage: Usage = field(default_factory=Usage)
    served_model: str = ""
    provider: str = ""
    cost: Decimal = Decimal(0)
    #: What the other levers saved on the original request, by lever (kept for the counterfactual).
    savings: dict[str, Decimal] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    tenant: str = "default"
    route: str = "default"
    tags: dict[str, str] = field(default_factory=dict)
    #: The cache key it was stored under: a value read under another key (a shared Redis
    #: that someone else writes to, a restore gone wrong) is never served.
    key: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "key": self.key,
                "protocol": self.protocol,
                "body": self.body,
                "usage": self.usage.to_dict(),
                "served_model": self.served_model,
                "provider": self.provider,
                "cost": str(self.cost),
                "savings": {k: str(v) for k, v in self.savings.items()},
                "created": self.created,
                "tenant": self.tenant,
                "route": self.route,
                "tags": self.tags,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> CachedResponse:
        data = orjson.loads(raw)
        return cls(
            protocol=data["protocol"],
            body=data["body"],
            usage=Usage.from_dict(data.get("usage") or {}),
            served_model=data.get("served_model", ""),
            provider=data.get("provider", ""),
            cost=Decimal(data.get("cost") or "0"),
            savings={k: Decimal(v) for k, v in (data.get("savings") or {}).items()},
            created=float(data.get("created") or 0.0),
            tenant=data.get("tenant", "default"),
            route=data.get("route", "default"),
            tags=dict(data.get("tags") or {}),
            key=str(data.get("key") or ""),
        )


def matches(entry: CachedResponse, route: str | None, tags: dict[str, str] | None, tenant: str | None) -> bool:
    """Whether `entry` is selected by an invalidation filter (every given part must match)."""
    if route is not None and entry.route != route:
        return False
    if tenant is not None and entry.tenant != tenant:
        return False
    return not tags or all(entry.tags.get(k) == v for k, v in tags.items())


class ResponseStore(ABC):
    """Keyed storage of `CachedResponse`s with a time to live, and invalidation by filter."""

    @abstractmethod
    async def get(self, key: str) -> CachedResponse | None: ...

    @abstractmethod
    async def set(self, key: str, value: CachedResponse, ttl: float | None) -> None:
        """Store `value` under `key` for `ttl` seconds (None: until evicted or invalidated)."""

    @abstractmethod
    async def delete(self, key: str) -> int:
        """Remove one key; returns how many entries went (0 or 1)."""

    @abstractmethod
    async def delete_where(
        self, *, route: str | None = None, tags: dict[str, str] | None = None, tenant: str | None = None
    ) -> int:
        """Remove every entry of `route` / carrying all `tags` / of `tenant`; returns the count."""

    @abstractmethod
    async def clear(self) -> int:
        """Remove everything; returns the count (where the store can tell)."""

    async def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections or files."""


class MemoryStore(ResponseStore):
    """An LRU bounded by entry count and by bytes of serialised responses. Per process."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[CachedResponse, float | None, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> CachedResponse | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, expires, _ = item
        if expires is not None and expires <= time.time():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: CachedResponse, ttl: float | None) -> None:
        self.put(key, value, None if ttl is None else time.time() + ttl, len(value.to_json()))

    def put(self, key: str, value: CachedResponse, expires: float | None, size: int) -> None:
        """Insert with an absolute expiry time (used by the tiered store to keep disk's expiry)."""
        if size > self.max_bytes:
            self._drop(key)
            return
        self._drop(key)
        self._items[key] = (value, expires, size)
        self.bytes += size
        while self._items and (len(self._items) > self.max_entries or self.bytes > self.max_bytes):
            oldest = next(iter(self._items))
            self._drop(oldest)

    def _drop(self, key: str) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[2]
        return True

    async def delete(self, key: str) -> int:
        return int(self._drop(key))

    async def delete_where(
        self, *, route: str | None = None, tags: dict[str, str] | None = None, tenant: str | None = None
    ) -> int:
        doomed = [k for k, (v, _, _) in self._items.items() if matches(v, route, tags, tenant)]
        for k in doomed:
            self._drop(k)
        return len(doomed)

    async def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        self.bytes = 0
        return n


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS response_cache (
    key TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    route TEXT NOT NULL,
    tags TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    value BLOB NOT NULL
)
"""


#: A counter bumped by every invalidation, so that memory tiers in other processes notice.
_SQLITE_META = "CREATE TABLE IF NOT EXISTS cache_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
_BUMP = (
    "INSERT INTO cache_meta (name, value) VALUES ('generation', 1) "
    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
)


def _cache_initial(dialect: str) -> list[str]:
    return [
        _SQLITE_SCHEMA,
        _SQLITE_META,
        "CREATE INDEX IF NOT EXISTS response_cache_route ON response_cache (route)",
        "CREATE INDEX IF NOT EXISTS response_cache_expires ON response_cache (expires)",
    ]


#: The SQLite response cache's schema history (see `thrifty.migrations`).
CACHE_MIGRATIONS = (Migration("response_cache_0001_initial", _cache_initial),)


class SQLiteStore(ResponseStore):
    """A SQLite file in WAL mode; every query runs in a worker thread."""

    def __init__(self, path: str | Path, purge_every: int = 1000) -> None:
        self.path = str(path)
        self.purge_every = purge_every
        self._writes = 0
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate(self._db, "sqlite", "response_cache", CACHE_MIGRATIONS, where=self.path)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _invalidate(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            count = self._db.execute(sql, params).rowcount
            self._db.execute(_BUMP)
            return count

    def _generation(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM cache_meta WHERE name = 'generation'").fetchone()
        return int(row[0]) if row else 0

    async def generation(self) -> int:
        """How many invalidations this file has seen (by any process)."""
        return await asyncio.to_thread(self._generation)

    def _get(self, key: str) -> tuple[CachedResponse, float | None, int] | None:
        with self._lock:
            row = self._db.execute("SELECT value, expires FROM response_cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if row[1] is not None and row[1] <= time.time():
                self._db.execute("DELETE FROM response_cache WHERE key = ?", (key,))
                return None
        return CachedResponse.from_json(row[0]), row[1], len(row[0])

    async def get(self, key: str) -> CachedResponse | None:
        item = await asyncio.to_thread(self._get, key)
        return None if item is None else item[0]

    async def get_with_expiry(self, key: str) -> tuple[CachedResponse, float | None, int] | None:
        return await asyncio.to_thread(self._get, key)

    async def set(self, key: str, value: CachedResponse, ttl: float | None) -> None:
        expires = None if ttl is None else time.time() + ttl
        blob = value.to_json()
        await self.put(key, value, expires, blob)

    async def put(self, key: str, value: CachedResponse, expires: float | None, blob: bytes) -> None:
        row = (key, value.tenant, value.route, orjson.dumps(value.tags).decode(), value.created, expires, blob)
        await asyncio.to_thread(self._put, row)

    def _put(self, row: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO response_cache (key, tenant, route, tags, created, expires, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._writes += 1
            if self._writes % self.purge_every == 0:  # expired rows are otherwise removed only when read
                self._db.execute(
                    "DELETE FROM response_cache WHERE expires IS NOT NULL AND expires <= ?", (time.time(),)
                )

    async def delete(self, key: str) -> int:
        return await asyncio.to_thread(self._invalidate, "DELETE FROM response_cache WHERE key = ?", (key,))

    async def delete_where(
        self, *, route: str | None = None, tags: dict[str, str] | None = None, tenant: str | None = None
    ) -> int:
        clauses: list[str] = []
        params: list[Any] = []
        if route is not None:
            clauses.append("route = ?")
            params.append(route)
        if tenant is not None:
            clauses.append("tenant = ?")
            params.append(tenant)
        for k, v in (tags or {}).items():
            clauses.append("EXISTS (SELECT 1 FROM json_each(response_cache.tags) WHERE key = ? AND value = ?)")
            params.extend([k, v])
        where = " AND ".join(clauses) or "1"
        return await asyncio.to_thread(self._invalidate, f"DELETE FROM response_cache WHERE {where}", tuple(params))

    async def clear(self) -> int:
        return await asyncio.to_thread(self._invalidate, "DELETE FROM response_cache")

    async def purge_expired(self) -> int:
        cur = await asyncio.to_thread(
            self._run, "DELETE FROM response_cache WHERE expires IS NOT NULL AND expires <= ?", (time.time(),)
        )
        return cur.rowcount

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._db.close()


class TieredStore(ResponseStore):
    """A memory LRU in front of SQLite: hot answers cost no disk read, all answers survive restarts.

    The memory tier is per process. Every invalidation bumps a counter in the SQLite file;
    a process whose memory tier may be stale (another process, such as `thrifty cache
    clear`, invalidated) notices within `check_interval` seconds and empties its memory tier.
    """

    def __init__(self, memory: MemoryStore, disk: SQLiteStore, check_interval: float = 1.0) -> None:
        self.memory = memory
        self.disk = disk
        self.check_interval = check_interval
        self._generation: int | None = None
        self._checked = 0.0

    async def _check_generation(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return
        self._checked = now
        generation = await self.disk.generation()
        if generation != self._generation:
            if self._generation is not None:
                await self.memory.clear()
            self._generation = generation

    async def get(self, key: str) -> CachedResponse | None:
        await self._check_generation()
        value = await self.memory.get(key)
        if value is not None:
            return value
        item = await self.disk.get_with_expiry(key)
        if item is None:
            return None
        value, expires, size = item
        self.memory.put(key, value, expires, size)
        return value

    async def set(self, key: str, value: CachedResponse, ttl: float | None) -> None:
        expires = None if ttl is None else time.time() + ttl
        blob = value.to_json()
        self.memory.put(key, value, expires, len(blob))
        await self.disk.put(key, value, expires, blob)

    async def delete(self, key: str) -> int:
        in_memory = await self.memory.delete(key)
        return max(in_memory, await self.disk.delete(key))

    async def delete_where(
        self, *, route: str | None = None, tags: dict[str, str] | None = None, tenant: str | None = None
    ) -> int:
        await self.memory.delete_where(route=route, tags=tags, tenant=tenant)
        return await self.disk.delete_where(route=route, tags=tags, tenant=tenant)

    async def clear(self) -> int:
        await self.memory.clear()
        return await self.disk.clear()

    async def close(self) -> None:
        await self.disk.close()


class RedisStore(ResponseStore):
    """Redis, for replicas sharing one cache. Entries expire by Redis TTL.

    Each entry is a string key; sets indexed by route, tag and tenant list the keys that
    invalidation deletes (a set may name keys that already expired, which is harmless, and
    expires itself with the longest-lived entry it names).
    """

    def __init__(self, url: str, prefix: str = "thrifty:cache:", budget_ms: float = 100.0) -> None:
        from thrifty.cache.redis_budget import RedisBudget

        self.url = url
        self.prefix = prefix
        #: Lookups share the request's Redis deadline; a store gets its own (see redis_budget).
        self.budget = RedisBudget(url, budget_ms=budget_ms)
        self.redis = self.budget.client

    def _k(self, key: str) -> str:
        return f"{self.prefix}r:{key}"

    def _index_keys(self, value: CachedResponse) -> list[str]:
        keys = [f"{self.prefix}route:{value.route}", f"{self.prefix}tenant:{value.tenant}"]
        keys += [f"{self.prefix}tag:{k}={v}" for k, v in value.tags.items()]
        return keys

    async def get(self, key: str) -> CachedResponse | None:
        raw = await self.budget.call(lambda r: r.get(self._k(key)))
        return None if raw is None else CachedResponse.from_json(raw)

    async def set(self, key: str, value: CachedResponse, ttl: float | None) -> None:
        async def write(redis: Any) -> None:
            async with redis.pipeline(transaction=True) as pipe:
                ttl_ms = None if ttl is None else max(1, int(ttl * 1000))
                pipe.set(self._k(key), value.to_json(), px=ttl_ms)
                for index in self._index_keys(value):
                    pipe.sadd(index, key)
                    # an index lives as long as its longest-lived entry, so expired entries do not pile up
                    if ttl_ms is None:
                        pipe.persist(index)
                    else:
                        pipe.pexpire(index, ttl_ms, nx=True)
                        pipe.pexpire(index, ttl_ms, gt=True)
                await pipe.execute()

        # after the upstream call the request's lookup deadline is long past: a budget of its own
        await self.budget.call(write, timeout=self.budget.budget)

    async def delete(self, key: str) -> int:
        return int(await self.redis.delete(self._k(key)))

    async def delete_where(
        self, *, route: str | None = None, tags: dict[str, str] | None = None, tenant: str | None = None
    ) -> int:
        sets = []
        if route is not None:
            sets.append(f"{self.prefix}route:{route}")
        if tenant is not None:
            sets.append(f"{self.prefix}tenant:{tenant}")
        sets += [f"{self.prefix}tag:{k}={v}" for k, v in (tags or {}).items()]
        if not sets:
            return await self.clear()
        members = await self.redis.sinter(sets)
        keys = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        if not keys:
            return 0
        removed = int(await self.redis.delete(*[self._k(k) for k in keys]))
        for s in sets:
            await self.redis.srem(s, *keys)
        return removed

    async def clear(self) -> int:
        removed = 0
        batch: list[Any] = []
        async for name in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
            batch.append(name)
            if len(batch) >= 500:
                removed += await self._delete_counting(batch)
                batch = []
        if batch:
            removed += await self._delete_counting(batch)
        return removed

    async def _delete_counting(self, names: list[Any]) -> int:
        entries = sum(1 for n in names if (n.decode() if isinstance(n, bytes) else n).startswith(f"{self.prefix}r:"))
        await self.redis.delete(*names)
        return entries

    async def close(self) -> None:
        await self.budget.aclose()


def default_sqlite_path(ledger_store: str) -> Path:
    """The cache file next to the ledger's SQLite file (or in the working directory)."""
    if ledger_store.startswith("sqlite:///"):
        ledger_path = Path(ledger_store[len("sqlite:///") :])
        if str(ledger_path) not in ("", ":memory:"):
            return ledger_path.with_name(ledger_path.stem + ".cache.db")
    return Path("thrifty.cache.db")


def open_store(
    url: str | None,
    *,
    ledger_store: str = "sqlite:///thrifty.db",
    memory_entries: int = 10_000,
    memory_bytes: int = 64 * 1024 * 1024,
    prefix: str = "thrifty:cache:",
    redis_budget_ms: float = 100.0,
) -> ResponseStore:
    """A store from a URL: `memory`, `sqlite` (next to the ledger), `sqlite:///path`, `redis://...`."""
    memory = MemoryStore(memory_entries, memory_bytes)
    if url in (None, "", "sqlite") and ledger_store.endswith(":memory:"):
        return memory  # an in-memory ledger (tests, demos) gets an in-memory cache
    if url in (None, "", "sqlite"):
        return TieredStore(memory, SQLiteStore(default_sqlite_path(ledger_store)))
    if url == "memory":
        return memory
    if url.startswith("sqlite:///"):
        return TieredStore(memory, SQLiteStore(url[len("sqlite:///") :]))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix=prefix, budget_ms=redis_budget_ms)
    from thrifty import plugins

    scheme = url.partition("://")[0]
    extra = plugins.cache_stores()
    if scheme in extra:
        return extra[scheme](url)
    known = ", ".join(["memory", "sqlite", "sqlite:///PATH", "redis://HOST:PORT/DB", *(f"{k}://..." for k in extra)])
    raise ValueError(f"unknown cache store {url!r}: use {known}")
