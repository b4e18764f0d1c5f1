"""`/readyz` that tells the truth: the state of each dependency, and one verdict for a load balancer.

Dependencies and their states (`thrifty.health`):

| dependency | ready | degraded | down |
|---|---|---|---|
| `ledger` | rows reach the store | the store fails or the spool is being replayed: rows are safe on disk | the spool cannot be written either: rows wait in memory |
| `redis:<url>` (cache, dedup) | answers within its budget | failing or its breaker is open: requests go on without it | - |
| `upstream:<model>` | its circuit breaker is closed | half-open (one trial request) | open, or the provider is not ready |

The overall status is the worst that matters to a load balancer, and its HTTP status:

- `ready` -> **200**;
- `degraded` -> **200**: serving works (a cache is skipped, ledger rows wait in the spool, one
  upstream is paused while its fallbacks serve); alert on it, do not take the replica out;
- `down` -> **503**: take the replica out of rotation. Down means the ledger cannot keep rows
  safe, every upstream's breaker is open, or the gateway has not started.

The same states are exported on `/metrics` as `thrifty_dependency_state` (0 ready, 1 degraded,
2 down), labelled by dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thrifty.health import DEGRADED, DOWN, READY, STATES, worst

if TYPE_CHECKING:
    from thrifty.cache.redis_budget import RedisBudget
    from thrifty.gateway import Gateway

__all__ = ["HTTP_STATUS", "dependencies", "metric_lines", "readiness", "redis_budgets"]

#: The HTTP status of each overall state.
HTTP_STATUS = {READY: 200, DEGRADED: 200, DOWN: 503}

_BREAKER = {"closed": READY, "half-open": DEGRADED, "open": DOWN}


def redis_budgets(gateway: Gateway) -> list[RedisBudget]:
    """The Redis clients the cache and dedup stages use (opening the cache's stores)."""
    found: list[RedisBudget] = []
    cache = gateway.services.cache
    if cache is not None:
        for store in cache.stores.all():
            budget = getattr(store, "budget", None)
            if budget is not None:
                found.append(budget)
    dedup = gateway.services.dedup
    if dedup is not None:
        for route in dedup.traffic_classes(gateway.config):
            settings = dedup.settings(route)
            if settings.enabled and settings.redis:
                dedup.redis(settings.redis, settings.redis_budget_ms)
        found.extend(dedup._redis.values())
    return found


def dependencies(gateway: Gateway) -> dict[str, dict[str, Any]]:
    """Each dependency's state, reason and figures."""
    deps: dict[str, dict[str, Any]] = {}
    ledger = gateway.ledger
    if ledger is not None:
        deps["ledger"] = {**ledger.health.snapshot(), "pending": ledger.pending, "spool_rows": ledger.spool.rows,
                          "spool": str(ledger.spool.path)}
    for budget in redis_budgets(gateway):
        state = budget.health.state
        if budget.breaker.state != "closed":
            state = DEGRADED
        deps[f"redis:{budget.health.name.removeprefix('redis ')}"] = {
            **budget.health.snapshot(), "state": state, "breaker": budget.breaker.state}
    spend = gateway.services.spend
    if spend is not None:  # budgets enforced per replica while their Redis does not answer
        deps["spend"] = {"state": DEGRADED if spend.degraded else READY, "reason": spend.degraded or None}
    dispatcher = gateway.dispatcher
    for name, provider in gateway.providers.items():
        breaker = dispatcher.breakers.get(name) if dispatcher is not None else None
        breaker_state = breaker.state if breaker is not None else "closed"
        state = _BREAKER.get(breaker_state, READY)
        try:
            provider_ready = provider.ready()
        except Exception:
            provider_ready = False
        if not provider_ready:
            state = DOWN
        entry: dict[str, Any] = {"state": state, "breaker": breaker_state, "provider_ready": provider_ready}
        if breaker is not None and breaker_state != "closed":
            entry["retry_in_s"] = round(breaker.retry_in(), 1)
        deps[f"upstream:{name}"] = entry
    return deps


def readiness(gateway: Gateway) -> tuple[str, dict[str, Any]]:
    """The overall state and the `/readyz` body."""
    deps = dependencies(gateway)
    upstreams = [d["state"] for k, d in deps.items() if k.startswith("upstream:")]
    if gateway.pipeline is None or deps.get("ledger", {}).get("state") == DOWN or (upstreams and all(s == DOWN for s in upstreams)):
        overall = DOWN
    else:
        overall = DEGRADED if worst([d["state"] for d in deps.values()]) != READY else READY
    body = {
        "status": overall,
        "dependencies": deps,
        "providers_not_ready": [k.removeprefix("upstream:") for k, d in deps.items()
                                if k.startswith("upstream:") and not d["provider_ready"]],
    }
    return overall, body


def metric_lines(gateway: Gateway) -> list[str]:
    """`thrifty_dependency_state` and the spool and Redis counters, for `/metrics`."""
    deps = dependencies(gateway)
    out = ["# HELP thrifty_dependency_state State of each dependency: 0 ready, 1 degraded, 2 down.",
           "# TYPE thrifty_dependency_state gauge"]
    for name, d in sorted(deps.items()):
        out.append(f'thrifty_dependency_state{{dependency="{_escape(name)}"}} {STATES.index(d["state"])}')
    overall, _ = readiness(gateway)
    out += ["# HELP thrifty_ready Overall readiness: 0 ready, 1 degraded, 2 down (as /readyz).",
            "# TYPE thrifty_ready gauge", f"thrifty_ready {STATES.index(overall)}"]
    ledger = gateway.ledger
    if ledger is not None:
        out += ["# HELP thrifty_ledger_spool_rows Ledger rows in the spool file, waiting for the store.",
                "# TYPE thrifty_ledger_spool_rows gauge", f"thrifty_ledger_spool_rows {ledger.spool.rows}",
                "# HELP thrifty_ledger_spooled_total Ledger rows sent to the spool since start.",
                "# TYPE thrifty_ledger_spooled_total counter", f"thrifty_ledger_spooled_total {ledger.spooled}"]
    budgets = redis_budgets(gateway)
    if budgets:
        out += ["# HELP thrifty_redis_calls_failed_total Redis calls that failed or ran out of budget.",
                "# TYPE thrifty_redis_calls_failed_total counter"]
        out += [f'thrifty_redis_calls_failed_total{{redis="{_escape(b.health.name)}"}} {b.failed}' for b in budgets]
        out += ["# HELP thrifty_redis_calls_refused_total Redis calls skipped because its circuit breaker was open.",
                "# TYPE thrifty_redis_calls_refused_total counter"]
        out += [f'thrifty_redis_calls_refused_total{{redis="{_escape(b.health.name)}"}} {b.refused}' for b in budgets]
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
