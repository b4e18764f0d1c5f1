"""In-flight dedup (singleflight): identical requests running at once share one upstream call.

The first request with a given key leads a *flight*; identical requests that arrive while it
runs subscribe to it instead of calling the provider. A complete reply is copied to every
subscriber; a stream fans out, each subscriber getting its own `EventStream` that replays the
chunks that came before it joined and then follows the live ones. One upstream call, one bill:
the subscriber that owns the bill (the leader, or the first follower still listening if the
leader went away) records the usage and cost; every other subscriber records zero billed
tokens and `ctx.save("dedup", cost)`.

Across replicas (`dedup.redis`), the local leader also takes a Redis lock (SET NX PX, kept
alive while it runs) and publishes the reply to a Redis stream; a replica that finds the lock
taken follows that stream. If the lock lapses without a result (the leader's process died)
or the leader reports a failure, the follower makes the call itself.

Redis trouble never stalls a request (see `thrifty.cache.redis_budget`): lookups share the
request's Redis deadline and a circuit breaker, and on any Redis failure the request goes on
deduplicating within this process. The lock is a short lease (`lock_ttl`, 3 s) that the
leader refreshes, holding a value only its flight knows: a lock whose acquisition timed out
may still be set when a stalled Redis wakes, so the flight deletes it (if it holds its value)
as soon as Redis answers, and at worst it lapses within one lease. A follower never waits
longer than the upstream's timeout plus `follow_margin` before calling on its own.

Failures are not shared as answers: when the leader's call fails in a way that may be
transient (an exception, a 5xx, 408 or 429), followers retry, contending again so that one
of them leads the retry (at most `max_attempts` rounds, then each calls on its own). A
client error that the identical request would get again (400, 401, 403, 404, 413, 422) is
shared. A stream that breaks after chunks were sent ends with the same error for everyone
who received them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from thrifty.cache.key import context_key, is_deterministic
from thrifty.cache.redis_budget import RedisBudget
from thrifty.errors import UpstreamError
from thrifty.health import DependencyUnavailable
from thrifty.pipeline.lever import Lever
from thrifty.types import Answerer, Context, EventStream, Handler, Reply, SSEEvent, Usage

if TYPE_CHECKING:
    from thrifty.gateway import Gateway

log = logging.getLogger(__name__)

#: Statuses of a failed reply that an identical request would get again, so they are shared.
SHARED_ERROR_STATUSES = frozenset({400, 401, 403, 404, 413, 422})


class DedupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Only share calls of deterministic requests (temperature 0 or a seed): two sampled
    #: requests asked for two samples.
    deterministic_only: bool = True
    #: Redis URL to dedup across replicas; None keeps it within this process.
    redis: str | None = None
    #: Seconds the cross-replica lock lives without being refreshed (a dead leader's lapses);
    #: the leader refreshes it every third of this.
    lock_ttl: float = Field(default=3.0, gt=0)
    #: Seconds a follower waits on the stream between checks of the leader's lock.
    poll: float = Field(default=0.5, gt=0)
    #: Milliseconds of Redis time a request may spend before its upstream call (the lock).
    redis_budget_ms: float = Field(default=100.0, gt=0)
    #: Seconds a follower waits beyond the upstream's own timeout before calling on its own.
    follow_margin: float = Field(default=5.0, ge=0)
    #: Seconds a follower waits for a lock's leader to show it is alive (its "start" entry)
    #: before taking the lock for a ghost and removing it.
    ghost_grace: float = Field(default=0.25, gt=0)
    #: Seconds a published result stays readable after the flight ended.
    result_ttl: float = Field(default=60.0, gt=0)
    #: Prefix of the Redis keys.
    prefix: str = "thrifty:dedup:"
    #: Rounds of contending again after a leader failed, before calling on one's own.
    max_attempts: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _shared_redis(self, info: ValidationInfo) -> DedupSettings:
        """With no Redis of its own, dedup spans the replicas through the config's `redis:`."""
        redis = (info.context or {}).get("redis")
        if self.redis is None and redis:
            self.redis = redis
        return self


#: Seconds a flight keeps trying to remove a lock whose SET timed out, waiting for Redis.
CLEAN_UP_FOR = 300.0


class _Retry(Exception):
    """The flight failed in a way that followers should retry."""


class Flight:
    """One upstream call and everything it produced, shared by its subscribers."""

    def __init__(self, key: str, billable: bool = True) -> None:
        self.key = key
        self.head: Reply | None = None
        self.is_stream = False
        self.events: list[SSEEvent] = []
        self.finished = False
        #: The leader's failure that followers should retry after.
        self.failure: BaseException | None = None
        #: A failure everybody gets (a client error the identical request would get again).
        self.shared_error: UpstreamError | None = None
        self.complete = False
        self.error: str | None = None
        self.usage = Usage()
        self.cost = Decimal(0)
        self.savings: dict[str, Decimal] = {}
        #: The request whose pipeline made the call here: its savings are recorded already.
        self.caller: Context | None = None
        self.target_model = ""
        self.leader_request_id = ""
        #: Whether one of this flight's subscribers pays the bill (False when following a remote leader).
        self.billable = billable
        self.subscribers: list[object] = []
        self.leader: object | None = None
        self.bill_owner: object | None = None
        self.task: asyncio.Task[None] | None = None
        #: The leader's own reply when it failed transiently (followers retry rather than share it).
        self.leader_reply: Reply | None = None
        self._changed = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """The event set at the next change (take it before checking the state)."""
        return self._changed

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.billable:
            if self.leader in self.subscribers:
                self.bill_owner = self.leader
            elif self.subscribers:
                self.bill_owner = self.subscribers[0]
        self.notify()

    def detach(self, sub: object) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(sub)
        if not self.subscribers and not self.finished and self.task is not None:
            self.task.cancel()


def _transient(status: int) -> bool:
    """Whether a failure with `status` may go away if tried again (so it is not shared)."""
    return status not in SHARED_ERROR_STATUSES


def _copy_error(err: UpstreamError) -> UpstreamError:
    return UpstreamError(
        err.status,
        err.message,
        retryable=err.retryable,
        retry_after=err.retry_after,
        error_type=err.error_type,
        body=copy.deepcopy(err.body),
    )


class _Publisher:
    """Writes a flight to a Redis stream in order, off the leader's hot path."""

    def __init__(self, redis: RedisBudget, stream_key: str, ttl_ms: int) -> None:
        self.redis = redis
        self.stream_key = stream_key
        self.ttl_ms = ttl_ms
        self.queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    def put(self, kind: str, data: Any) -> None:
        self.queue.put_nowait((kind, data))

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            batch = [item]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            entries = [b for b in batch if b is not None]

            async def publish(redis: Any, entries: list[tuple[str, Any]] = entries) -> None:
                async with redis.pipeline(transaction=False) as pipe:
                    for kind, data in entries:
                        pipe.xadd(self.stream_key, {"t": kind, "d": orjson.dumps(data)})
                    pipe.pexpire(self.stream_key, self.ttl_ms)
                    await pipe.execute()

            # the local reply must not fail because Redis did (its health logs the outage)
            with contextlib.suppress(DependencyUnavailable):
                await self.redis.call(publish, background=True)
            if None in batch:
                return

    async def close(self) -> None:
        self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.task), timeout=5)


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class DedupStage(Lever[DedupSettings]):
    """The `dedup` lever."""

    name = "dedup"
    Settings = DedupSettings

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.flights: dict[str, Flight] = {}
        self._redis: dict[str, RedisBudget] = {}
        #: Clean-ups of locks whose acquisition timed out (kept referenced while they run).
        self._cleanups: set[asyncio.Task[None]] = set()
        #: Upstream calls this stage let through (leaders and fallbacks), for reports and tests.
        self.upstream_calls = 0
        self.shared = 0

    def start(self) -> None:
        self.gateway.services.dedup = self

    def redis(self, url: str, budget_ms: float = 100.0) -> RedisBudget:
        client = self._redis.get(url)
        if client is None:
            client = RedisBudget(url, budget_ms=budget_ms)
            self._redis[url] = client
        return client

    def stats(self) -> dict[str, float]:
        """Counters since start, for /metrics: calls let through, replies shared, flights now."""
        return {"upstream_calls": self.upstream_calls, "shared": self.shared, "in_flight": len(self.flights)}

    async def aclose(self) -> None:
        """Close the Redis clients (the gateway calls this at shutdown)."""
        for task in list(self._cleanups):
            task.cancel()
        for client in self._redis.values():
            await client.aclose()
        self._redis.clear()

    async def handle(self, ctx: Context, next: Handler) -> Reply:
        settings = self.settings(ctx.traffic)
        if settings.deterministic_only and not is_deterministic(ctx.body):
            return await next(ctx)
        key = context_key(ctx, extra={"stream": ctx.stream, "stream_options": ctx.body.get("stream_options")})
        for _ in range(settings.max_attempts):
            flight = self.flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._start(key, ctx, next, settings)
            sub = object()
            flight.subscribers.append(sub)
            if leading:
                flight.leader = sub
            try:
                return await self._deliver(flight, sub, ctx, leading)
            except _Retry:
                flight.detach(sub)
                if leading:
                    assert flight.failure is not None
                    raise flight.failure from None
                continue
            except BaseException:
                flight.detach(sub)
                raise
        self.upstream_calls += 1
        return await next(ctx)

    # -- the source of a flight: the upstream call, or another replica's -------------------

    def _start(self, key: str, ctx: Context, next: Handler, settings: DedupSettings) -> Flight:
        flight = Flight(key)
        flight.leader_request_id = ctx.request_id
        self.flights[key] = flight

        async def run() -> None:
            try:
                await self._source(flight, ctx, next, settings)
            except asyncio.CancelledError:
                if flight.failure is None and flight.head is None:
                    flight.failure = _Retry("the leading request was cancelled")
                flight.error = flight.error or "cancelled"
                raise
            except BaseException as exc:  # handed to the subscribers, not lost
                if flight.head is None and flight.shared_error is None:
                    flight.failure = exc
                flight.error = flight.error or f"{type(exc).__name__}: {exc}"
            finally:
                if self.flights.get(key) is flight:
                    del self.flights[key]
                flight.finish()

        flight.task = asyncio.create_task(run())
        return flight

    async def _source(self, flight: Flight, ctx: Context, next: Handler, settings: DedupSettings) -> None:
        if settings.redis is None:
            await self._upstream(flight, ctx, next, None)
            return
        redis = self.redis(settings.redis, settings.redis_budget_ms)
        lock_key = f"{settings.prefix}lock:{flight.key}"
        lock_ms = max(1, int(settings.lock_ttl * 1000))
        follow_until = time.monotonic() + self._upstream_timeout(ctx) + settings.follow_margin
        for _ in range(settings.max_attempts):
            flight_id = uuid.uuid4().hex
            try:
                acquired = await redis.run("set", lock_key, flight_id, nx=True, px=lock_ms)
            except DependencyUnavailable as exc:
                if exc.maybe_sent:  # the SET may have reached Redis and run later: remove our lock
                    self._clean_up_later(redis, lock_key, flight_id, settings.lock_ttl)
                await self._upstream(flight, ctx, next, None)  # dedup within this process only
                return
            if acquired:
                await self._lead_remote(flight, ctx, next, settings, redis, lock_key, flight_id, lock_ms)
                return
            try:
                current = await redis.call(lambda r: r.get(lock_key))
            except DependencyUnavailable:
                await self._upstream(flight, ctx, next, None)
                return
            if current is None:
                continue
            leader_id = current.decode() if isinstance(current, bytes) else str(current)
            if await self._follow_remote(flight, redis, lock_key, f"{settings.prefix}s:{leader_id}", leader_id,
                                         settings, follow_until):
                return
            if time.monotonic() >= follow_until:
                break
        await self._upstream(flight, ctx, next, None)

    def _upstream_timeout(self, ctx: Context) -> float:
        """The leader's upstream timeout: that of the requested model, or the longest configured."""
        config = self.gateway.config
        for name in (ctx.target_model, ctx.requested_model):
            if name and config.has_model(name):
                return config.model(name).timeout
        return max((m.timeout for m in config.models), default=600.0)

    def _clean_up_later(self, redis: RedisBudget, lock_key: str, flight_id: str, lease: float) -> None:
        """Delete `lock_key` if it holds `flight_id`, as soon as Redis answers again (within
        `CLEAN_UP_FOR` seconds: a stalled Redis runs the late SET when it wakes)."""

        async def clean() -> None:
            deadline = time.monotonic() + CLEAN_UP_FOR
            while time.monotonic() < deadline:
                with contextlib.suppress(DependencyUnavailable):
                    await redis.call(lambda r: r.eval(_RELEASE, 1, lock_key, flight_id), background=True)
                    # answered; repeat once in case the late SET runs after this command
                    await asyncio.sleep(0.2)
                    await redis.call(lambda r: r.eval(_RELEASE, 1, lock_key, flight_id), background=True)
                    return
                await asyncio.sleep(0.25)

        self._background(clean())

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _lead_remote(
        self,
        flight: Flight,
        ctx: Context,
        next: Handler,
        settings: DedupSettings,
        redis: RedisBudget,
        lock_key: str,
        flight_id: str,
        lock_ms: int,
    ) -> None:
        publisher = _Publisher(redis, f"{settings.prefix}s:{flight_id}", max(lock_ms, int(settings.result_ttl * 1000)))
        publisher.put("start", {})  # tells followers this lock has a live leader (see _follow_remote)

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(max(0.05, settings.lock_ttl / 3))
                with contextlib.suppress(DependencyUnavailable):
                    await redis.call(lambda r: r.eval(_REFRESH, 1, lock_key, flight_id, lock_ms), background=True)

        refresher = asyncio.create_task(keep_alive())
        try:
            await self._upstream(flight, ctx, next, publisher)
        except BaseException as exc:
            if flight.head is None:
                shared = flight.shared_error
                publisher.put("fail", _error_dict(shared) if shared is not None else {"transient": True})
            else:
                publisher.put("end", {"complete": False, "error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            refresher.cancel()

            async def wind_up() -> None:  # off the reply's path: a stalled Redis must not hold it
                await publisher.close()
                with contextlib.suppress(DependencyUnavailable):
                    await redis.call(lambda r: r.eval(_RELEASE, 1, lock_key, flight_id), background=True)

            self._background(wind_up())

    async def _upstream(self, flight: Flight, ctx: Context, next: Handler, publisher: _Publisher | None) -> None:
        """Make the one upstream call and record what it produced on `flight`."""
        before = dict(ctx.savings)
        flight.caller = ctx
        flight.billable = True  # this replica makes the call (perhaps after following one that died)
        self.upstream_calls += 1
        try:
            reply = await next(ctx)
        except UpstreamError as err:
            if not _transient(err.status):
                flight.shared_error = err
            raise
        flight.target_model = ctx.target_model
        if reply.stream is None and not reply.ok and _transient(reply.status):
            flight.failure = _Retry(f"upstream answered {reply.status}")
            if publisher is not None:
                publisher.put("fail", {"transient": True})
            # the leader still gets its own reply; followers retry
            flight.leader_reply = reply
            return
        flight.head = reply
        flight.is_stream = reply.stream is not None
        if publisher is not None:
            publisher.put("head", _head_dict(reply, ctx.target_model))
        flight.notify()
        if reply.stream is not None:
            stream = reply.stream
            async for event in stream:
                flight.events.append(event)
                if publisher is not None:
                    publisher.put("ev", {"data": event.data, "event": event.event})
                flight.notify()
            flight.complete = stream.complete
            flight.error = stream.error
            flight.usage = stream.usage
        else:
            flight.complete = True
            flight.usage = reply.usage
        flight.cost = reply.cost
        flight.savings = {k: v - before.get(k, Decimal(0)) for k, v in ctx.savings.items() if v != before.get(k)}
        if publisher is not None:
            publisher.put("end", _end_dict(flight))

    async def _follow_remote(
        self, flight: Flight, redis: RedisBudget, lock_key: str, stream_key: str, leader_id: str,
        settings: DedupSettings, until: float,
    ) -> bool:
        """Feed `flight` from another replica's published stream.

        Returns False when the leader failed or vanished before anything was received, when
        Redis fails, or at `until` (the upstream's timeout plus a margin), so that the caller
        contends for the lock again or calls upstream itself.
        """
        flight.billable = False
        last = "0"
        started = time.monotonic()
        seen = False
        while True:
            # until the leader's first entry, wait only `ghost_grace`: a live leader publishes
            # "start" as it takes the lock; a lock without one was left by a stalled Redis
            block = settings.poll if seen else settings.ghost_grace
            try:
                if time.monotonic() >= until:
                    raise DependencyUnavailable("waited for the leader past its upstream timeout")
                answer = await redis.run("xread", {stream_key: last}, block=max(1, int(block * 1000)), count=256,
                                         timeout=block + 4 * redis.budget)
                if answer:
                    seen = True
                elif time.monotonic() - started >= settings.ghost_grace and not seen:
                    log.info("dedup: lock %s has no live leader (a stalled Redis ran a late SET); removing it", lock_key)
                    await redis.call(lambda r: r.eval(_RELEASE, 1, lock_key, leader_id), timeout=redis.budget)
                    return False
                else:
                    current = await redis.call(lambda r: r.get(lock_key), timeout=redis.budget)
                    if current is not None and (current.decode() if isinstance(current, bytes) else current) == leader_id:
                        continue
                    # the lock is gone or taken over; read once more in case the end raced the check
                    answer = await redis.run("xread", {stream_key: last}, count=256, timeout=redis.budget)
            except DependencyUnavailable as exc:
                if flight.head is None:
                    return False
                flight.error = f"lost the deduplicating leader on another replica ({exc})"
                return True
            if not answer:
                if flight.head is None:
                    return False
                flight.error = "the deduplicating leader on another replica went away"
                return True
            for _stream, entries in answer:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    try:
                        kind = _field(fields, "t")
                        data = orjson.loads(_field(fields, "d"))
                        if not isinstance(data, dict):
                            raise TypeError(f"a {type(data).__name__}, not an object")
                        if kind == "head":
                            head = _reply_from_head(data)
                        elif kind == "ev":
                            event = SSEEvent(data=data["data"], event=data.get("event"))
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        # Not what a leader writes: never relayed. Before the head, this
                        # request calls the upstream itself; after it, its stream ends as cut.
                        log.warning("dedup: unreadable entry in %s (%s: %s); not relayed", stream_key,
                                    type(exc).__name__, str(exc)[:200])
                        if flight.head is None:
                            return False
                        flight.error = "the deduplicating leader's stream was unreadable"
                        return True
                    if kind == "head":
                        flight.head = head
                        flight.is_stream = bool(data.get("stream"))
                        flight.target_model = data.get("target_model", "")
                    elif kind == "ev":
                        flight.events.append(event)
                    elif kind == "end":
                        flight.complete = bool(data.get("complete"))
                        flight.error = data.get("error")
                        flight.usage = Usage.from_dict(data.get("usage") or {})
                        flight.cost = Decimal(data.get("cost") or "0")
                        flight.savings = {k: Decimal(v) for k, v in (data.get("savings") or {}).items()}
                        flight.notify()
                        return True
                    elif kind == "fail":
                        if not data.get("transient"):
                            flight.shared_error = UpstreamError(
                                int(data.get("status", 502)),
                                str(data.get("message", "")),
                                error_type=data.get("error_type"),
                                body=data.get("body"),
                            )
                            raise flight.shared_error
                        if flight.head is None:
                            return False
                        flight.error = "the deduplicating leader failed"
                        return True
            flight.notify()

    # -- the subscribers' side ----------------------------------------------------------

    async def _deliver(self, flight: Flight, sub: object, ctx: Context, leading: bool) -> Reply:
        while flight.head is None and not flight.finished:
            await flight.changed().wait()
        if flight.head is None:
            if flight.shared_error is not None:
                if leading:
                    raise flight.shared_error
                self.shared += 1
                raise _copy_error(flight.shared_error)
            if leading and flight.leader_reply is not None:
                flight.detach(sub)
                return flight.leader_reply
            if flight.failure is None:
                flight.failure = _Retry("the flight ended without a reply")
            raise _Retry()
        head = flight.head
        if not leading:
            self.shared += 1
            ctx.target_model = ctx.target_model or flight.target_model
            ctx.dedup_role = "follower"
            ctx.extra["dedup_leader"] = flight.leader_request_id
        if not flight.is_stream:
            while not flight.finished:
                await flight.changed().wait()
            flight.detach(sub)
            return self._settle(
                flight, sub, ctx, dataclasses.replace(head, body=copy.deepcopy(head.body), headers=dict(head.headers))
            )
        reply = dataclasses.replace(head, stream=None, headers=dict(head.headers), usage=Usage(), cost=Decimal(0))
        holder: list[EventStream] = []
        stream = EventStream(self._follow(flight, sub, ctx, reply, holder))
        holder.append(stream)  # later stages may wrap reply.stream; this one is ours to finish
        reply.stream = stream
        return reply

    async def _follow(
        self, flight: Flight, sub: object, ctx: Context, reply: Reply, holder: list[EventStream]
    ) -> AsyncIterator[SSEEvent]:
        try:
            i = 0
            while True:
                changed = flight.changed()
                while i < len(flight.events):
                    yield flight.events[i]
                    i += 1
                if flight.finished:
                    break
                await changed.wait()
            self._settle(flight, sub, ctx, reply)
            stream = holder[0]
            stream.complete = flight.complete and flight.error is None
            stream.error = flight.error
            stream.usage = reply.usage
        finally:
            flight.detach(sub)

    def _settle(self, flight: Flight, sub: object, ctx: Context, reply: Reply) -> Reply:
        """Put the bill on the owner; everyone else records zero usage and the dedup saving."""
        if ctx is not flight.caller:  # the caller's own levers recorded their savings on it already
            for lever, amount in flight.savings.items():
                ctx.save(lever, amount)
        if flight.bill_owner is sub:
            reply.usage = flight.usage
            reply.cost = flight.cost
            return reply
        reply.usage = Usage()
        reply.cost = Decimal(0)
        if reply.ok and flight.error is None:
            ctx.save("dedup", flight.cost, flight.usage.total_input_tokens + flight.usage.output_tokens)
            ctx.answered_by = Answerer.DEDUP
        return reply


def _field(fields: dict[Any, Any], name: str) -> Any:
    value = fields.get(name.encode(), fields.get(name))
    return value.decode() if isinstance(value, bytes) and name == "t" else value


def _head_dict(reply: Reply, target_model: str) -> dict[str, Any]:
    return {
        "status": reply.status,
        "body": reply.body,
        "stream": reply.stream is not None,
        "served_model": reply.served_model,
        "provider": reply.provider,
        "headers": reply.headers,
        "target_model": target_model,
    }


def _reply_from_head(data: dict[str, Any]) -> Reply:
    return Reply(
        status=int(data.get("status", 200)),
        body=data.get("body"),
        served_model=data.get("served_model", ""),
        provider=data.get("provider", ""),
        headers=dict(data.get("headers") or {}),
    )


def _end_dict(flight: Flight) -> dict[str, Any]:
    return {
        "complete": flight.complete,
        "error": flight.error,
        "usage": flight.usage.to_dict(),
        "cost": str(flight.cost),
        "savings": {k: str(v) for k, v in flight.savings.items()},
    }


def _error_dict(err: UpstreamError) -> dict[str, Any]:
    return {
        "transient": False,
        "status": err.status,
        "message": err.message,
        "error_type": err.error_type,
        "body": err.body,
    }
