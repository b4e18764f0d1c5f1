"""Spend control: who a virtual key is, and whether its request may go out.

`SpendControl` is the gateway's one admission service (`gateway.services.spend`). The server
calls it twice per request: `admit` before the pipeline (authorisation of the key's models and
routes, then one atomic reservation of the request's worst plausible cost and tokens against
every budget and rate limit that applies: the key's, its team's, its tags'), and `settle`
when the ledger row is written, however the request ended (answered, failed, stream cut,
client gone), with the row's actual cost, side calls included. The ledger is the source of
truth: counters are rebuilt from it when a replica starts, and Redis keeps them across
restarts when it is configured.

Redis unreachable (the safe default, documented in README): each replica goes on enforcing
with counters of its own, allowing itself `outage_share` of what remained of each budget when
Redis was last seen (so N replicas with share 1/N can never overspend together), logs a
warning and reports `degraded` in `/readyz`. When Redis answers again the amounts settled
meanwhile are added to its counters and the replica goes back to them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from thrifty.errors import Forbidden, RateLimited, ThriftyError, Unauthorized
from thrifty.ledger.record import LedgerRecord
from thrifty.server.auth import Principal
from thrifty.spend.alerts import Alerts
from thrifty.spend.estimate import Estimate, OutputEstimator
from thrifty.spend.keys import KeyStore, Team, VirtualKey, key_id_of
from thrifty.spend.limits import BudgetSpec, Limits, Window, parse_window
from thrifty.spend.meters import NANO, Charge, LocalMeters, Meter, Meters, Refusal
from thrifty.spend.outage import FailoverMeters
from thrifty.spend.settings import SpendSettings
from thrifty.types import Context

if TYPE_CHECKING:
    from thrifty.gateway import Gateway
    from thrifty.ledger.store import LedgerStore

__all__ = ["KeyPrincipal", "SpendControl", "Ticket", "budget_meters"]

log = logging.getLogger(__name__)

_MINUTE = Window(name="1m", unit=None, seconds=60.0)
UNAUTHORIZED = "missing or invalid thrifty key: send it as 'Authorization: Bearer <key>' or 'x-api-key'"


@dataclass(frozen=True)
class KeyPrincipal(Principal):
    """A request's virtual key."""

    key: VirtualKey | None = None


@dataclass
class Ticket:
    """One admitted request's reservation, until it settles."""

    charges: list[Charge]
    estimate: Estimate
    at: float


def _usd(nano: int) -> str:
    """Nano-dollars as exact USD text."""
    return format(Decimal(nano).scaleb(-9).normalize(), "f")


def _nano(usd: Decimal) -> int:
    return math.ceil(usd * NANO)


def budget_meters(scope: str, budgets: list[BudgetSpec], now: float) -> list[Meter]:
    out = []
    for b in budgets:
        w = b.parsed
        keys = tuple(f"{scope}:b:{k}" for k in w.counter_keys(now))
        out.append(Meter(scope=scope, what="budget", limit=_nano(b.usd), keys=keys, ttl=w.ttl(now), window=w))
    return out


def limit_meters(scope: str, limits: Limits, now: float, span: int = 60) -> list[Meter]:
    """Meters of rate limits: rpm and tpm over fixed `span`-second windows, and concurrency."""
    out = []
    start = int(now // span) * span
    window = _MINUTE if span == 60 else Window(name=f"{span}s", unit=None, seconds=float(span))
    if limits.rpm is not None:
        out.append(Meter(scope, "rpm", limits.rpm, (f"{scope}:rpm:{start}",), 2 * span, window))
    if limits.tpm is not None:
        out.append(Meter(scope, "tpm", limits.tpm, (f"{scope}:tpm:{start}",), 2 * span, window))
    if limits.concurrency is not None:
        out.append(Meter(scope, "concurrency", limits.concurrency, (f"{scope}:conc",), 3600, None, "z"))
    return out


class SpendControl:
    """Keys, budgets and rate limits of one replica (see the module's docstring)."""

    def __init__(self, gateway: Gateway, settings: SpendSettings) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.settings = settings
        self.store: KeyStore | None = None
        self.ledger_store: LedgerStore | None = None
        self.meters: Meters = LocalMeters()
        self.estimator = OutputEstimator(None, self.config, settings)
        self.alerts: Alerts | None = None
        self._keys: dict[str, VirtualKey] = {}
        self._teams: dict[str, Team] = {}
        self._tickets: dict[str, Ticket] = {}
        self._debounce: dict[str, float] = {}
        #: Requests refused at admission since start, by reason (budget, rate, concurrency).
        self.refusals: dict[str, int] = {}
        #: Key ids not in the store, until when (monotonic), and store look-ups this second.
        self._missing: dict[str, float] = {}
        self._lookups: tuple[int, int] = (0, 0)
        self._meter_cache: dict[tuple[Any, ...], tuple[dict[str, VirtualKey], list[Meter]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self.started = False

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from thrifty.ledger.store import open_store

        self.store = await asyncio.to_thread(KeyStore, self.config.store)
        self.ledger_store = await asyncio.to_thread(open_store, self.config.store)
        self.estimator.store = self.ledger_store
        if self.settings.redis:
            self.meters = FailoverMeters(self.settings)
        await self.reload()
        await self.rebuild()
        self.alerts = Alerts(self.store, self.settings.alerts)
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        self.started = True

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self.alerts is not None:
            await self.alerts.aclose()
        await self.meters.aclose()
        for s in (self.store, self.ledger_store):
            if s is not None:
                await asyncio.to_thread(s.close)

    async def reload(self) -> None:
        """Read keys and teams from the store (at start, every `keys_refresh` s, after a change)."""
        assert self.store is not None
        keys = await asyncio.to_thread(self.store.all_keys)
        teams = await asyncio.to_thread(self.store.teams)
        self._keys = {k.key_id: k for k in keys}
        self._debounce = {k.name: k.debounce for k in keys if k.debounce > 0 and k.usable(time.time())}
        self._teams = {t.name: t for t in teams}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.keys_refresh)
            try:
                await self.reload()
            except Exception:
                log.warning("reloading virtual keys failed; keeping the last ones", exc_info=True)

    # -- who ------------------------------------------------------------------------------------

    def is_virtual(self, presented: str | None) -> bool:
        return key_id_of(presented) is not None

    def authenticate(self, presented: str | None) -> KeyPrincipal | None:
        """The principal of a virtual key; None for unknown, revoked, expired or malformed."""
        key_id = key_id_of(presented)
        if not key_id or presented is None:
            return None
        key = self._keys.get(key_id)
        if key is None or not key.matches(presented) or not key.usable(time.time()):
            return None
        return KeyPrincipal(name=key.name, tenant=key.tenant or key.name, admin=False, key=key)

    async def authenticate_fresh(self, presented: str | None) -> KeyPrincipal | None:
        """`authenticate`, and for a key id this replica has not loaded yet (created through
        another replica less than `keys_refresh` ago), one look in the store before refusing:
        a new key works on every replica at once, not after a 401 storm. Ids found missing are
        not looked up again for 2 s, and at most 50 look-ups a second leave a replica, so
        made-up keys cannot turn into database load. Revocation still reaches other replicas
        within `keys_refresh`."""
        found = self.authenticate(presented)
        key_id = key_id_of(presented)
        if found is not None or self.store is None or not key_id or key_id in self._keys:
            return found
        now = time.monotonic()
        if self._missing.get(key_id, 0.0) > now:
            return None
        second = int(now)
        if self._lookups[0] != second:
            self._lookups = (second, 0)
        if self._lookups[1] >= 50:
            return None
        self._lookups = (second, self._lookups[1] + 1)
        try:
            key = await asyncio.to_thread(self.store.key_by_id, key_id)
        except Exception:
            log.warning("looking up virtual key %s failed", key_id, exc_info=True)
            return None
        if key is None:
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing[key_id] = now + 2.0
            return None
        self._keys = {**self._keys, key.key_id: key}
        return self.authenticate(presented)

    def debounce_of(self, key_name: str) -> float:
        """Seconds of the key's debounce window (0: none)."""
        return self._debounce.get(key_name, 0.0)

    # -- admission ------------------------------------------------------------------------------

    def meters_for(self, key: VirtualKey | None, tags: dict[str, str], now: float) -> list[Meter]:
        """The meters a request of `key` with `tags` is charged against (the same within a
        second: windows move on whole seconds, so they are built once a second per key)."""
        matched = tuple(t for t in self.settings.tags if tags.get(t.partition("=")[0]) == t.partition("=")[2])
        cache_key = (key.key_id if key is not None else None, matched, int(now))
        found = self._meter_cache.get(cache_key)
        if found is not None and found[0] is self._keys:
            return found[1]
        meters = self._build_meters(key, matched, float(int(now)))
        if len(self._meter_cache) > 10_000:
            self._meter_cache.clear()
        self._meter_cache[cache_key] = (self._keys, meters)
        return meters

    def _build_meters(self, key: VirtualKey | None, matched: tuple[str, ...], now: float) -> list[Meter]:
        out: list[Meter] = []
        if key is not None:
            scope = f"key:{key.key_id}"
            out += budget_meters(scope, key.budgets, now)
            out += limit_meters(scope, key.limits, now, self.settings.rate_window)
            team = self._teams.get(key.team) if key.team else None
            if team is not None:
                out += budget_meters(f"team:{team.name}", team.budgets, now)
                out += limit_meters(f"team:{team.name}", team.limits, now, self.settings.rate_window)
        for tag in matched:
            out += budget_meters(f"tag:{tag}", self.settings.tags[tag], now)
        return out

    def _check_access(self, ctx: Context, key: VirtualKey) -> None:
        model = ctx.requested_model
        if self.config.has_model(model):
            if key.models and model not in key.models:
                raise Forbidden(f"the key {key.name!r} may not use the model {model!r} (allowed: {', '.join(key.models)})",
                                param="model", code="model_not_allowed")
        elif key.aliases and model not in key.aliases or not key.aliases and key.models:
            raise Forbidden(f"the key {key.name!r} may not use the alias {model!r}"
                            + (f" (allowed: {', '.join(key.aliases)})" if key.aliases else ""),
                            param="model", code="model_not_allowed")
        if key.routes and ctx.traffic not in key.routes:
            raise Forbidden(f"the key {key.name!r} may not use the route {ctx.traffic!r} (allowed: {', '.join(key.routes)})",
                            code="route_not_allowed")

    async def admit(self, ctx: Context, principal: Principal | None) -> None:
        """Authorise and reserve, or raise the error the client gets (403 or 429)."""
        key = principal.key if isinstance(principal, KeyPrincipal) else None
        if key is not None:
            if not key.usable(time.time()):  # expired since authentication
                raise Unauthorized(UNAUTHORIZED, code="invalid_api_key")
            if key.tags:
                ctx.tags = {**ctx.tags, **key.tags}
            if key.team:
                ctx.extra["team"] = key.team
            self._check_access(ctx, key)
        now = time.time()
        meters = self.meters_for(key, ctx.tags, now)
        if not meters:
            return
        model = ctx.requested_model
        candidates = [model] if self.config.has_model(model) else (
            key.models if key is not None and key.models else [m.name for m in self.config.models])
        est = await self.estimator.estimate(ctx.protocol, ctx.body, ctx.key_name, ctx.traffic, candidates, ctx.endpoint)
        cost = _nano(est.usd)
        charges = []
        for m in meters:
            amount = cost if m.what == "budget" else est.tokens if m.what == "tpm" else 1
            charges.append(Charge(m, amount))
        refusal = await self.meters.reserve(ctx.request_id, charges, now, now + self.settings.lease_seconds)
        if refusal is not None:
            what = refusal.meter.what
            reason = "budget" if what == "budget" else "concurrency" if what == "concurrency" else "rate"
            self.refusals[reason] = self.refusals.get(reason, 0) + 1
            raise self._refused(refusal, est, now)
        self._tickets[ctx.request_id] = Ticket(charges, est, now)
        ctx.extra["reserved_usd"] = str(est.usd.quantize(Decimal("1e-9")))

    def _refused(self, r: Refusal, est: Estimate, now: float) -> ThriftyError:
        m = r.meter
        if m.what == "budget":
            assert m.window is not None
            reset = m.window.reset(now)
            when = dt.datetime.fromtimestamp(reset, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            free = "resets" if not m.window.rolling else "its oldest spend leaves the window"
            return RateLimited(
                f"budget exceeded: {m.scope} has a budget of ${_usd(m.limit)} per {m.window.describe()}; "
                f"${_usd(r.used)} is spent or reserved by requests in flight, and this request may cost up to "
                f"${_usd(r.amount)} ({est.input_tokens} input + {est.output_tokens} output tokens, output from "
                f"{est.output_source}); it {free} at {when}",
                retry_after=max(1.0, reset - now), code="budget_exceeded")
        if m.what == "concurrency":
            return RateLimited(f"rate limit: {m.scope} allows {m.limit} requests at once, and {r.used} are in flight",
                               retry_after=1.0, code="rate_limit_exceeded")
        unit = "requests" if m.what == "rpm" else "tokens"
        span = self.settings.rate_window
        retry = span - now % span
        per = "minute" if span == 60 else f"{span} seconds"
        return RateLimited(f"rate limit: {m.scope} allows {m.limit} {unit} per {per}; {r.used} used in this one, "
                           f"this request needs {r.amount}; retry in {retry:.0f}s",
                           retry_after=max(1.0, retry), code="rate_limit_exceeded")

    # -- settlement ------------------------------------------------------------------------------

    def settle(self, ctx: Context, record: LedgerRecord) -> None:
        """Settle the request's reservation to its actual cost and tokens (in the background)."""
        ticket = self._tickets.pop(ctx.request_id, None)
        if ticket is None:
            return
        cost = _nano(record.cost)
        tokens = (record.input_tokens + record.cache_read_tokens + record.cache_write_tokens
                  + record.cache_write_1h_tokens + record.output_tokens)
        actual = [cost if c.meter.what == "budget" else tokens if c.meter.what == "tpm"
                  else c.amount if c.meter.what == "rpm" else 0 for c in ticket.charges]
        if isinstance(self.meters, LocalMeters) and (self.alerts is None or not self.alerts.enabled):
            self.meters.settle_now(ctx.request_id, ticket.charges, actual)  # nothing to wait for: no task
            return
        task = asyncio.get_running_loop().create_task(self._settle(ctx.request_id, ticket, actual))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, request_id: str, ticket: Ticket, actual: list[int]) -> None:
        try:
            await self.meters.settle(request_id, ticket.charges, actual)
        except Exception:
            log.exception("settling request %s failed", request_id)
            return
        if self.alerts is not None and self.alerts.enabled:
            budgets = [c.meter for c in ticket.charges if c.meter.what == "budget"]
            try:
                use = await self.meters.read(budgets, time.time())
            except Exception:
                return
            for m, (used, reserved) in zip(budgets, use, strict=True):
                self.alerts.check(m, used - reserved, time.time())

    async def drain(self) -> None:
        """Wait for the settlements in flight (tests and benchmarks)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # -- the counters' view ---------------------------------------------------------------------

    @property
    def degraded(self) -> str | None:
        """Why counters are not shared right now (None when they are, or need not be)."""
        return self.meters.degraded if isinstance(self.meters, FailoverMeters) else None

    async def usage(self) -> list[dict[str, Any]]:
        """Every budget and limit: its use, reservation and reset (the admin API and dashboard)."""
        now = time.time()
        meters: list[Meter] = []
        for key in self._keys.values():
            if key.revoked_at is None:
                scope = f"key:{key.key_id}"
                meters += budget_meters(scope, key.budgets, now) + limit_meters(scope, key.limits, now, self.settings.rate_window)
        for team in self._teams.values():
            meters += budget_meters(f"team:{team.name}", team.budgets, now)
            meters += limit_meters(f"team:{team.name}", team.limits, now, self.settings.rate_window)
        for tag, budgets in self.settings.tags.items():
            meters += budget_meters(f"tag:{tag}", budgets, now)
        values = await self.meters.read(meters, now) if meters else []
        out = []
        for m, (used, reserved) in zip(meters, values, strict=True):
            money = m.what == "budget"
            row: dict[str, Any] = {
                "scope": m.scope, "what": m.what, "window": m.window.describe() if m.window else None,
                "limit": m.limit / NANO if money else m.limit,
                "used": (used - reserved) / NANO if money else used - reserved,
                "reserved": reserved / NANO if money else reserved,
                "resets_at": m.window.reset(now) if m.window else None,
            }
            if m.scope.startswith("key:"):
                owner = self._keys.get(m.scope[4:])
                row["key"] = owner.name if owner else None
            out.append(row)
        return out

    # -- rebuilding from the ledger ----------------------------------------------------------------

    def _ledger_sums(self, now: float) -> dict[str, tuple[int, int]]:
        """Budget counters of the current windows, from the ledger's costs."""
        store = self.ledger_store
        if store is None:
            return {}
        scopes: list[tuple[str, list[BudgetSpec], list[str] | None, str | None]] = []
        for key in self._keys.values():
            if key.revoked_at is None and key.budgets:
                scopes.append((f"key:{key.key_id}", key.budgets, [key.name], None))
        for team in self._teams.values():
            if team.budgets:
                members = sorted({k.name for k in self._keys.values() if k.team == team.name})
                scopes.append((f"team:{team.name}", team.budgets, members, None))
        for tag_name, tag_budgets in self.settings.tags.items():
            scopes.append((f"tag:{tag_name}", tag_budgets, None, tag_name))
        out: dict[str, tuple[int, int]] = {}
        for scope, specs, names, tag in scopes:
            for b in specs:
                w = b.parsed
                start = w.start(now)
                if names is not None:
                    if not names:
                        continue
                    marks = ", ".join("?" * len(names))
                    rows = store.execute(
                        f"SELECT ts, cost_pico FROM requests WHERE ts >= ? AND key_name IN ({marks})", (start, *names))
                else:
                    k, _, v = (tag or "").partition("=")
                    rows = [(ts, c) for ts, c, tags in store.execute(
                        "SELECT ts, cost_pico, tags FROM requests WHERE ts >= ?", (start,))
                        if json.loads(tags or "{}").get(k) == v]
                for name, total in _bucketed(w, rows, now).items():
                    out[f"{scope}:b:{name}"] = (total, w.ttl(now))
        return out

    async def rebuild(self) -> None:
        """Seed the current windows' counters from the ledger (kept where Redis has them)."""
        now = time.time()
        try:
            values = await asyncio.to_thread(self._ledger_sums, now)
        except Exception:
            log.exception("rebuilding budget counters from the ledger failed")
            return
        if values:
            await self.meters.seed(values)


def _bucketed(w: Window, rows: list[tuple[Any, ...]], now: float) -> dict[str, int]:
    names = w.counter_keys(now)
    totals = dict.fromkeys(names, 0)
    for ts, pico in rows:
        name = w.counter_keys(float(ts))[-1] if w.rolling else names[0]
        if name in totals:
            totals[name] += int(pico or 0) // 1000
    return totals


def parse_budgets(items: list[str]) -> list[BudgetSpec]:
    """`10/day`, `200/month`, `5/24h` (CLI flags) as budgets."""
    out = []
    for item in items:
        usd, sep, window = item.partition("/")
        if not sep:
            raise ValueError(f"budget {item!r}: write USD/window, e.g. 10/day or 5/24h")
        parse_window(window)
        out.append(BudgetSpec.model_validate({"usd": usd.strip().lstrip("$"), "window": window}))
    return out
