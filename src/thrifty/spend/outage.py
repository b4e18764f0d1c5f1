"""Redis counters with a safe fallback for when Redis does not answer.

While Redis is unreachable each replica enforces on counters of its own: a budget's local
counter starts at `limit - (limit - last_seen) * outage_share`, i.e. the replica allows itself
its share of the room that was left when Redis last answered (or, for a counter it never saw,
of what the ledger said at start); a concurrency limit gets its share of the slots. Amounts
settled meanwhile are journalled and added to Redis when it answers again (a probe every half
second), and settlements of requests admitted through Redis before the outage are replayed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from thrifty.spend.meters import (
    Charge,
    LocalMeters,
    Meter,
    Meters,
    MetersUnavailable,
    RedisMeters,
    Refusal,
    scaled,
)
from thrifty.spend.settings import SpendSettings

__all__ = ["FailoverMeters"]

log = logging.getLogger(__name__)

PROBE_SECONDS = 0.5


class FailoverMeters(Meters):
    def __init__(self, settings: SpendSettings) -> None:
        assert settings.redis is not None
        self.redis = RedisMeters(settings.redis, settings.redis_prefix, settings.redis_timeout)
        self.share = settings.outage_share
        self.local = LocalMeters()
        self.degraded: str | None = None
        self._seeded: set[str] = set()
        self._local_ids: set[str] = set()
        self._journal: dict[str, tuple[int, int]] = {}
        self._pending: list[tuple[str, list[Charge], list[int]]] = []
        self._probe: asyncio.Task[None] | None = None
        #: Counters' use as the ledger said at start (for counters Redis never answered about).
        self.baseline: dict[str, int] = {}

    def _fail(self, exc: MetersUnavailable) -> None:
        if self.degraded is None:
            log.warning("spend: Redis is unreachable (%s); enforcing budgets locally with %.0f%% of each "
                        "remaining budget until it answers", exc, self.share * 100)
            self.degraded = f"redis unreachable since {time.strftime('%H:%M:%S')}: {exc}"
            self._seeded.clear()
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop())

    def _local_charges(self, charges: list[Charge]) -> list[Charge]:
        out = []
        for c in charges:
            m = c.meter
            if m.kind == "z":
                out.append(Charge(scaled(m, self.share), c.amount))
                continue
            name = m.keys[-1]
            if name not in self._seeded:
                self._seeded.add(name)
                seen = self.redis.last_seen.get(name, self.baseline.get(name, 0))
                room = max(0, m.limit - seen)
                start = m.limit - int(room * self.share)
                self.local.add(name, start - self.local.used(m, time.time()), m.ttl)
            out.append(c)
        return out

    async def reserve(self, request_id: str, charges: list[Charge], now: float, lease_until: float) -> Refusal | None:
        if self.degraded is None:
            try:
                return await self.redis.reserve(request_id, charges, now, lease_until)
            except MetersUnavailable as exc:
                self._fail(exc)
        refusal = self.local.reserve_now(request_id, self._local_charges(charges), now, lease_until)
        if refusal is None:
            self._local_ids.add(request_id)
        return refusal

    async def settle(self, request_id: str, charges: list[Charge], actual: list[int]) -> None:
        if request_id in self._local_ids:
            self._local_ids.discard(request_id)
            self.local.settle_now(request_id, charges, actual)
            for c, a in zip(charges, actual, strict=True):
                if c.meter.kind == "c" and a:
                    name = c.meter.keys[-1]
                    self._journal[name] = (self._journal.get(name, (0, 0))[0] + a, c.meter.ttl)
            if self.degraded is None:
                await self._push()
            return
        if self.degraded is None:
            try:
                await self.redis.settle(request_id, charges, actual)
                return
            except MetersUnavailable as exc:
                self._fail(exc)
        self._pending.append((request_id, charges, actual))

    async def _push(self) -> None:
        journal, self._journal = self._journal, {}
        pending, self._pending = self._pending, []
        try:
            if journal:
                await self.redis.add(journal)
            journal = {}
            while pending:
                rid, charges, actual = pending[0]
                await self.redis.settle(rid, charges, actual)
                pending.pop(0)
        except MetersUnavailable as exc:
            for name, (v, ttl) in journal.items():
                self._journal[name] = (self._journal.get(name, (0, 0))[0] + v, ttl)
            self._pending = pending + self._pending
            self._fail(exc)

    async def _probe_loop(self) -> None:
        while self.degraded is not None:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                await self.redis.ping()
            except MetersUnavailable:
                continue
            self.degraded = None
            await self._push()
            if self.degraded is None:
                log.warning("spend: Redis answers again; settled amounts reconciled, counters shared again")

    async def read(self, meters: list[Meter], now: float) -> list[tuple[int, int]]:
        if self.degraded is None:
            try:
                return await self.redis.read(meters, now)
            except MetersUnavailable as exc:
                self._fail(exc)
        return await self.local.read(meters, now)

    async def seed(self, values: dict[str, tuple[int, int]]) -> None:
        self.baseline.update({k: v for k, (v, _ttl) in values.items()})
        try:
            await self.redis.seed(values)
        except MetersUnavailable as exc:
            self._fail(exc)

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        if self.degraded is None and (self._journal or self._pending):
            await self._push()
        await self.redis.aclose()
