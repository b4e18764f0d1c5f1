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


# Both scripts take the key prefix and a compact plan (one line per meter: kind, amount, limit,
# ttl, counter names) and build the key names themselves: one argument instead of some 70 made
# the client's encoding of the command the largest part of an admission's cost. Keys that a
# script builds are fine on a standalone Redis (or a primary with replicas), not on a Redis
# Cluster.
_RESERVE = """
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local rid = ARGV[3]
local lease = ARGV[4]
local plan = {}
local seen = {}
local m = 0
for line in string.gmatch(ARGV[5], '[^;]+') do
  m = m + 1
  local f = {}
  for w in string.gmatch(line, '%S+') do f[#f + 1] = w end
  local used = 0
  if f[1] == 'z' then
    local z = prefix .. f[5]
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    used = redis.call('ZCARD', z)
  else
    for i = 5, #f do
      used = used + tonumber(redis.call('GET', prefix .. f[i]) or '0')
    end
  end
  if used + tonumber(f[2]) > tonumber(f[3]) then
    return {m, tostring(used)}
  end
  seen[m] = tostring(used)
  plan[m] = f
end
for i = 1, m do
  local f = plan[i]
  if f[1] == 'z' then
    local z = prefix .. f[5]
    redis.call('ZADD', z, lease, rid)
    redis.call('EXPIRE', z, f[4])
  else
    local k = prefix .. f[#f]
    redis.call('INCRBY', k, f[2])
    redis.call('EXPIRE', k, f[4])
    redis.call('INCRBY', k .. ':r', f[2])
    redis.call('EXPIRE', k .. ':r', f[4])
  end
end
return {0, unpack(seen)}
"""

# Plan lines: kind, delta (actual - reserved), reserved, ttl, the counter charged.
_SETTLE = """
local prefix = ARGV[1]
local rid = ARGV[2]
for line in string.gmatch(ARGV[3], '[^;]+') do
  local f = {}
  for w in string.gmatch(line, '%S+') do f[#f + 1] = w end
  local k = prefix .. f[5]
  if f[1] == 'z' then
    redis.call('ZREM', k, rid)
  else
    redis.call('INCRBY', k, f[2])
    redis.call('EXPIRE', k, f[4])
    redis.call('DECRBY', k .. ':r', f[3])
    redis.call('EXPIRE', k .. ':r', f[4])
  end
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
        plan = ";".join(f"{c.meter.kind} {c.amount} {c.meter.limit} {c.meter.ttl} {' '.join(c.meter.keys)}" for c in charges)
        out = await self._call(self._reserve(keys=[], args=[self.prefix, repr(now), request_id, repr(lease_until), plan]))
        which = int(out[0])
        if which:
            c = charges[which - 1]
            return Refusal(c.meter, int(out[1]), c.amount)
        for c, used in zip(charges, out[1:], strict=False):
            if c.meter.kind == "c":
                self.last_seen[c.meter.keys[-1]] = int(used) + c.amount
        return None

    async def settle(self, request_id: str, charges: list[Charge], actual: list[int]) -> None:
        plan = ";".join(f"{c.meter.kind} {a - c.amount} {c.amount} {c.meter.ttl} {c.meter.keys[-1]}"
                        for c, a in zip(charges, actual, strict=True))
        await self._call(self._settle(keys=[], args=[self.prefix, request_id, plan]))

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
