"""Redis with a budget: a stalled or dead Redis costs a request milliseconds, never seconds.

The cache and dedup treat Redis as optional: when it fails they do without it. But a failure
that takes redis-py's default 5 s socket timeout to show, once per call and per request, turns
a Redis stall into 10-15 s requests. `RedisBudget` wraps one client so that:

- every call made on a request's behalf shares one **deadline** per request
  (`budget_ms`, 100 ms by default), so the Redis work of one request is bounded whatever it is;
- a **circuit breaker** opens after `failures` consecutive failures: while open, calls fail at
  once (no network), and one trial call per `cooldown` seconds checks whether Redis is back
  (with a PING first, so that a trial never leaves a late write behind);
- every failure raises `DependencyUnavailable`, and only the state changes are logged
  (`thrifty.health`), so an outage writes a handful of lines, not a traceback per request.

Calls that are not on a request's critical path (a lock refresh, publishing a stream, the
clean-up of a lock whose acquisition timed out) use `background=True`: their own timeout
(`background_timeout`) instead of the request's deadline.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from thrifty.health import DEGRADED, READY, DependencyUnavailable, Health
from thrifty.providers.breaker import CircuitBreaker
from thrifty.urls import redacted

__all__ = ["RedisBudget", "start_request"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The deadline of the request whose Redis work is running, as a one-item list set by its first
#: call: shared by every call of the request, and by the tasks it starts (they copy the context
#: and so hold the same list). None outside a request: each call then has the budget alone.
_DEADLINE: ContextVar[list[float] | None] = ContextVar("thrifty_redis_deadline", default=None)


def start_request() -> None:
    """Start a request's Redis budget (the server calls this as each chat request begins)."""
    _DEADLINE.set([])


class RedisBudget:
    """One redis-py asyncio client behind a per-request deadline and a circuit breaker."""

    def __init__(
        self,
        url: str,
        *,
        budget_ms: float = 100.0,
        background_timeout: float = 1.0,
        failures: int = 3,
        cooldown: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.budget = budget_ms / 1000.0
        self.background_timeout = background_timeout
        # Socket timeouts as a backstop: the deadline below is what bounds a call. The connect
        # timeout also bounds redis-py's close of a connection whose call timed out (it waits
        # for the close under it): at 1 s, a request in flight as Redis stalled took 1.1 s. A bounded pool
        # (requests wait for a connection, within their deadline) and no CLIENT SETINFO on
        # connect: after an outage every connection is new, and a storm of fresh connections,
        # each taking three round trips, is what made recovery slow.
        # redis-py 7+ says "driver_info", older versions "lib_name"
        quiet: dict[str, Any] = ({"driver_info": None} if importlib.util.find_spec("redis.driver_info")
                                 else {"lib_name": None, "lib_version": None})
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=None, socket_timeout=max(background_timeout, 1.0),
            socket_connect_timeout=0.25, **quiet)
        self.client: Any = aioredis.Redis(connection_pool=pool)
        self.breaker = CircuitBreaker(failures, cooldown)
        self.health = Health(f"redis {redacted(url)}", log)
        #: Calls refused fast by the open breaker, and calls that failed or ran out of time.
        self.refused = 0
        self.failed = 0

    async def call(self, op: Callable[[Any], Awaitable[T]], *, background: bool = False,
                   timeout: float | None = None) -> T:
        """Run `op(client)` within the request's remaining budget (or `timeout`/the background
        timeout); raise `DependencyUnavailable` when the breaker is open or the call fails."""
        probing = self.breaker.state == "half-open"
        if not self.breaker.allow():
            self.refused += 1
            raise DependencyUnavailable(f"{self.health.name}: circuit open")
        if timeout is None:
            if background:
                timeout = self.background_timeout
            else:
                timeout = self._remaining()
                if timeout <= 0:  # this request spent its budget: skip Redis, no verdict on it
                    self.breaker.release()
                    raise DependencyUnavailable(f"{self.health.name}: the request's Redis budget is spent")
        sent = False
        try:
            async with asyncio.timeout(timeout):
                if probing:  # the trial after an outage is a PING: a command that would change
                    await self.client.ping()  # state (a lock's SET) must not run late if it stalls
                sent = True
                result = await op(self.client)
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except Exception as exc:
            self.failed += 1
            self.breaker.failure()
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{exc.__class__.__name__}: {str(exc)[:160]}"
            self.health.set(DEGRADED, f"{reason}; requests go on without it")
            raise DependencyUnavailable(f"{self.health.name}: {reason}", maybe_sent=sent) from None
        self.breaker.success()
        self.health.set(READY)
        return result

    async def run(self, command: str, *args: Any, background: bool = False, timeout: float | None = None,
                  **kwargs: Any) -> Any:
        """`call` for one client method: `await budget.run("get", key)`."""
        return await self.call(lambda r: getattr(r, command)(*args, **kwargs), background=background, timeout=timeout)

    def _remaining(self) -> float:
        holder = _DEADLINE.get()
        if holder is None:
            return self.budget
        now = time.monotonic()
        if not holder:
            holder.append(now + self.budget)
        return holder[0] - now

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    def stats(self) -> dict[str, float]:
        return {"refused": self.refused, "failed": self.failed,
                "breaker_open": 1.0 if self.breaker.state == "open" else 0.0}
