"""Counters that admission reserves against: in this process, or in Redis shared by replicas.

Every budget and rate limit is a `Meter`: a limit, and the counters whose sum is its use (one
for a calendar window, 12 buckets for a rolling one; concurrency is a set of leases instead).
`reserve` checks every meter of a request and charges all of them, or none, in one atomic
step; `settle` moves each charge from the reservation to the actual amount. Each counter has
a twin (`<name>:r`) holding the part that is still reserved, for the dashboard.

Why our own Lua rather than a rate-limit library: `limits` and `pyrate-limiter` check and
charge one limit at a time and cannot take a charge back, while a request here must be
admitted against several budgets and limits at once (all or none) and then settled to an
amount only known at its end. One Redis script does the check-and-charge of every meter, so
two replicas can never both take the last room of a budget.

Money is counted in nano-dollars (integers; Redis INCRBY is exact and a Lua double is exact
to 9e15, i.e. $9M per counter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from thrifty.spend.limits import Window

__all__ = ["Charge", "LocalMeters", "Meter", "Meters", "MetersUnavailable", "RedisMeters", "Refusal"]

log = logging.getLogger(__name__)

NANO = 10**9


class MetersUnavailable(Exception):
    """The counter store did not answer in time."""


@dataclass(frozen=True)
class Meter:
    """One limit a request is checked and charged against."""

    #: Whose limit: `key:<id>`, `team:<name>`, `tag:<k=v>`.
    scope: str
    #: budget (nano-USD) | rpm (requests) | tpm (tokens) | concurrency (requests in flight)
    what: str
    limit: int
    #: Counters whose sum is the use; a charge goes to the last one. One for concurrency.
    keys: tuple[str, ...]
    ttl: int
    window: Window | None = None
    kind: Literal["c", "z"] = "c"

    @property
    def name(self) -> str:
        return f"{self.scope} {self.what}" + (f" {self.window.name}" if self.window else "")


@dataclass(frozen=True)
class Charge:
    meter: Meter
    amount: int


@dataclass(frozen=True)
class Refusal:
    """The first meter that had no room: its use (settled + reserved) and the request's need."""

    meter: Meter
    used: int
    amount: int


@dataclass
class _Lease:
    until: float


class Meters(ABC):
    """Where counters live."""

    @abstractmethod
    async def reserve(self, request_id: str, charges: list[Charge], now: float, lease_until: float) -> Refusal | None:
        """Charge every meter, or none and say which refused."""

    @abstractmethod
    async def settle(self, request_id: str, charges: list[Charge], actual: list[int]) -> None:
        """Replace each reserved amount by the actual one (0 for concurrency: the slot frees)."""

    @abstractmethod
    async def read(self, meters: list[Meter], now: float) -> list[tuple[int, int]]:
        """(use, of which reserved) of each meter."""

    @abstractmethod
    async def seed(self, values: dict[str, tuple[int, int]]) -> None:
        """Set counters that do not exist yet: name -> (value, ttl). Existing ones are kept."""

    async def aclose(self) -> None:
        return None


class LocalMeters(Meters):
    """Counters in this process. The event loop runs one coroutine at a time and these
    methods never await, so each call is atomic."""

    def __init__(self) -> None:
        #: counter -> [value, expiry]
        self._cells: dict[str, list[float]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._lease_check: dict[str, float] = {}
        self._purged = time.time()

    def _get(self, name: str, now: float) -> int:
        cell = self._cells.get(name)
        if cell is None:
            return 0
        if cell[1] <= now:
            del self._cells[name]
            return 0
        return int(cell[0])

    def _add(self, name: str, delta: int, ttl: int, now: float) -> None:
        cell = self._cells.get(name)
        if cell is None or cell[1] <= now:
            self._cells[name] = [delta, now + ttl]
        else:
            cell[0] += delta
            cell[1] = now + ttl

    def _purge(self, now: float) -> None:
        if now - self._purged < 60:
            return
        self._purged = now
        for name in [n for n, cell in self._cells.items() if cell[1] <= now]:
            del self._cells[name]

    def used(self, meter: Meter, now: float) -> int:
        if meter.kind == "z":
            leases = self._leases.get(meter.keys[0], {})
            if leases and now >= self._lease_check.get(meter.keys[0], 0.0):  # drop expired leases, at most once a second
                for rid in [r for r, until in leases.items() if until <= now]:
                    del leases[rid]
                self._lease_check[meter.keys[0]] = now + 1.0
            return len(leases)
        return sum(self._get(k, now) for k in meter.keys)

    def reserve_now(self, request_id: str, charges: list[Charge], now: float, lease_until: float) -> Refusal | None:
        self._purge(now)
        for c in charges:
            used = self.used(c.meter, now)
            if used + c.amount > c.meter.limit:
                return Refusal(c.meter, used, c.amount)
        for c in charges:
            if c.meter.kind == "z":
                self._leases.setdefault(c.meter.keys[0], {})[request_id] = lease_until
            else:
                self._add(c.meter.keys[-1], c.amount, c.meter.ttl, now)
                self._add(c.meter.keys[-1] + ":r", c.amount, c.meter.ttl, now)
        return None

    def settle_now(self, request_id: str, charges: list[Charge], actual: list[int]) -> None:
        now = time.time()
        for c, a in zip(charges, actual, strict=True):
            if c.meter.kind == "z":
                self._leases.get(c.meter.keys[0], {}).pop(request_id, None)
            else:
                self._add(c.meter.keys[-1], a - c.amount, c.meter.ttl, now)
                self._add(c.meter.keys[-1] + ":r", -c.amount, c.meter.ttl, now)

    def add(self, name: str, delta: int, ttl: int) -> None:
        self._add(name, delta, ttl, time.time())

    async def reserve(self, request_id: str, charges: list[Charge], now: float, lease_until: float) -> Refusal | None:
        return self.reserve_now(request_id, charges, now, lease_until)

    async def settle(self, request_id: str, charges: list[Charge], actual: list[int]) -> None:
        self.settle_now(request_id, charges, actual)

    async def read(self, meters: list[Meter], now: float) -> list[tuple[int, int]]:
        return [(self.used(m, now), 0 if m.kind == "z" else self._get(m.keys[-1] + ":r", now)) for m in meters]

    async def seed(self, values: dict[str, tuple[int, int]]) -> None:
        now = time.time()
        for name, (value, ttl) in values.items():
            if name not in self._cells:
                self._cells[name] = [value, now + ttl]


_RESERVE = """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local lease = ARGV[3]
local n = tonumber(ARGV[4])
local a = 5
local k = 1
local plan = {}
local seen = {}
for m = 1, n do
  local kind = ARGV[a]
  local nr = tonumber(ARGV[a + 1])
  local amount = tonumber(ARGV[a + 2])
  local limit = tonumber(ARGV[a + 3])
  local used = 0
  if kind == 'z' then
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
    used = redis.call('ZCARD', KEYS[k])
    plan[m] = {kind, KEYS[k], ARGV[a + 2], ARGV[a + 4]}
    k = k + 1
  else
    for i = 0, nr - 1 do
      used = used + tonumber(redis.call('GET', KEYS[k + i]) or '0')
    end
    plan[m] = {kind, KEYS[k + nr - 1], ARGV[a + 2], ARGV[a + 4], KEYS[k + nr]}
    k = k + nr + 1
  end
  if used + amount > limit then
    return {m, tostring(used)}
  end
  seen[m] = tostring(used)
  a = a + 5
end
for m = 1, n do
  local p = plan[m]
  if p[1] == 'z' then
    redis.call('ZADD', p[2], lease, rid)
    redis.call('EXPIRE', p[2], p[4])
  else
    redis.call('INCRBY', p[2], p[3])
    redis.call('EXPIRE', p[2], p[4])
    redis.call('INCRBY', p[5], p[3])
    redis.call('EXPIRE', p[5], p[4])
  end
end
return {0, unpack(seen)}
"""

_SETTLE = """
local rid = ARGV[1]
local n = tonumber(ARGV[2])
local a = 3
local k = 1
for m = 1, n do
  if ARGV[a] == 'z' then
    redis.call('ZREM', KEYS[k], rid)
    k = k + 1
  else
    redis.call('INCRBY', KEYS[k], ARGV[a + 1])
    redis.call('EXPIRE', KEYS[k], ARGV[a + 3])
    redis.call('DECRBY', KEYS[k + 1], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[k + 1], ARGV[a + 3])
    k = k + 2
  end
  a = a + 4
end
return 1
"""


@dataclass
class RedisMeters(Meters):
    """Counters in Redis, shared by every replica; each reserve and settle is one Lua script."""

    url: str
    prefix: str
    timeout: float = 0.25
    client: Any = field(init=False)
    #: The use each counter had at its last successful reserve (for the outage fallback).
    last_seen: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.from_url(self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
        self._reserve = self.client.register_script(_RESERVE)
        self._settle = self.client.register_script(_SETTLE)

    def k(self, name: str) -> str:
        return self.prefix + name

    async def _call(self, coro: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout

        try:
            async with asyncio.timeout(self.timeout * 2):  # no extra task, unlike wait_for
                return await coro
        except (RedisConnectionError, RedisTimeout, TimeoutError, OSError) as exc:
            raise MetersUnavailable(f"{exc.__class__.__name__}: {exc}") from None

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def reserve(self, request_id: str, charges: list[Charge], now: float, lease_until: float) -> Refusal | None:
        keys: list[str] = []
        args: list[Any] = [repr(now), request_id, repr(lease_until), len(charges)]
        for c in charges:
            m = c.meter
            if m.kind == "z":
                keys.append(self.k(m.keys[0]))
            else:
                keys.extend(self.k(n) for n in m.keys)
                keys.append(self.k(m.keys[-1] + ":r"))
            args.extend([m.kind, len(m.keys), str(c.amount), str(m.limit), str(m.ttl)])
        out = await self._call(self._reserve(keys=keys, args=args))
        which = int(out[0])
        if which:
            c = charges[which - 1]
            return Refusal(c.meter, int(out[1]), c.amount)
        for c, used in zip(charges, out[1:], strict=False):
            if c.meter.kind == "c":
                self.last_seen[c.meter.keys[-1]] = int(used) + c.amount
        return None

    async def settle(self, request_id: str, charges: list[Charge], actual: list[int]) -> None:
        keys: list[str] = []
        args: list[Any] = [request_id, len(charges)]
        for c, a in zip(charges, actual, strict=True):
            m = c.meter
            if m.kind == "z":
                keys.append(self.k(m.keys[0]))
                args.extend(["z", "0", "0", "0"])
            else:
                keys.extend([self.k(m.keys[-1]), self.k(m.keys[-1] + ":r")])
                args.extend(["c", str(a - c.amount), str(c.amount), str(m.ttl)])
        await self._call(self._settle(keys=keys, args=args))

    async def add(self, values: dict[str, tuple[int, int]]) -> None:
        """INCRBY each counter (reconciling what was settled while Redis was away)."""
        async with self.client.pipeline(transaction=True) as pipe:
            for name, (delta, ttl) in values.items():
                pipe.incrby(self.k(name), delta)
                pipe.expire(self.k(name), ttl)
            await self._call(pipe.execute())

    async def read(self, meters: list[Meter], now: float) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        async with self.client.pipeline(transaction=False) as pipe:
            for m in meters:
                if m.kind == "z":
                    pipe.zcount(self.k(m.keys[0]), now, "+inf")
                else:
                    pipe.mget([self.k(n) for n in m.keys])
                    pipe.get(self.k(m.keys[-1] + ":r"))
            raw = await self._call(pipe.execute())
        i = 0
        for m in meters:
            if m.kind == "z":
                out.append((int(raw[i]), 0))
                i += 1
            else:
                out.append((sum(int(v or 0) for v in raw[i]), int(raw[i + 1] or 0)))
                i += 2
        return out

    async def seed(self, values: dict[str, tuple[int, int]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for name, (value, ttl) in values.items():
                pipe.set(self.k(name), value, ex=ttl, nx=True)
            await self._call(pipe.execute())

    async def aclose(self) -> None:
        await self.client.aclose()


def scaled(meter: Meter, share: float) -> Meter:
    """A concurrency meter with `share` of its slots (at least one)."""
    return replace(meter, limit=max(1, int(meter.limit * share)))
