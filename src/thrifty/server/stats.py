"""Live figures from the ledger for the dashboard and `GET /v1/thrifty/stats`.

Everything is computed in SQL over a time window (`since`), except latency percentiles,
which need the values themselves and read at most `LATENCY_SAMPLE` of the newest rows.
Works on both ledger stores (SQLite and PostgreSQL) through `LedgerStore.execute`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from thrifty.ledger.record import from_pico
from thrifty.ledger.store import LedgerStore

LATENCY_SAMPLE = 50_000
MAX_POINTS = 120
#: Bucket widths the time series may use, in seconds.
BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400)


def bucket_for(window_s: float) -> int:
    """The smallest bucket that keeps the series under MAX_POINTS points."""
    for b in BUCKETS:
        if window_s / b <= MAX_POINTS:
            return b
    return BUCKETS[-1]


def _usd(pico: Any) -> float:
    return float(from_pico(int(pico or 0)))


@dataclass(frozen=True)
class _Window:
    """The rows one dashboard read covers: `ts >= since`, on one ledger store."""

    store: LedgerStore
    since: float

    def rows(self, sql: str, params: list[Any] | None = None) -> list[Any]:
        """`sql` (which may use {w}, "WHERE ts >= ?") with the window's `since` first."""
        return self.store.execute(sql.format(w="WHERE ts >= ?"), [self.since, *(params or [])])


def collect(store: LedgerStore, since: float | None = None, now: float | None = None) -> dict[str, Any]:
    """All dashboard figures for rows with ts >= since (default: the last 24 hours), one panel each."""
    now = time.time() if now is None else now
    since = now - 86400 if since is None else since
    bucket = bucket_for(max(now - since, 60))
    win = _Window(store, since)
    totals = _totals(win)
    savings, tokens_saved, escalated = _savings(win)
    return {
        "since": since,
        "now": now,
        "bucket_s": bucket,
        "totals": totals,
        "series": _series(win, bucket),
        "by_model": _grouped(win, "served_model"),
        "by_route": _grouped(win, "route"),
        "by_feature": _grouped(win, "COALESCE(feature, '-')"),
        "by_key": _grouped(win, "COALESCE(key_name, '-')"),
        "savings_by_lever": dict(sorted(savings.items(), key=lambda kv: -kv[1])),
        "tokens_saved_by_lever": tokens_saved,
        "cache": _cache(win),
        "routing": _routing(win, totals["requests"], escalated),
        "latency_ms": _latency(win),
        "errors": _errors(win),
        "tasks": _tasks(win, totals),
    }


def _totals(win: _Window) -> dict[str, Any]:
    """Requests, spend, savings, tokens, errors and mean latency over the window."""
    (n, cost, cf, saved, tin, tcached, tout, errors, lat_avg) = win.rows(
        """SELECT COUNT(*), SUM(cost_pico), SUM(counterfactual_pico), SUM(saved_pico),
            SUM(input_tokens + cache_read_tokens + cache_write_tokens + cache_write_1h_tokens),
            SUM(cache_read_tokens), SUM(output_tokens),
            SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), AVG(latency_ms) FROM requests {w}"""
    )[0]
    n = int(n or 0)
    return {
        "requests": n,
        "cost": _usd(cost),
        "counterfactual_cost": _usd(cf),
        "saved": _usd(saved),
        "saved_share": (_usd(saved) / _usd(cf)) if cf else 0.0,
        "errors": int(errors or 0),
        "error_rate": (int(errors or 0) / n) if n else 0.0,
        "input_tokens": int(tin or 0),
        "cached_tokens": int(tcached or 0),
        "output_tokens": int(tout or 0),
        "input_tokens_per_request": (int(tin or 0) / n) if n else 0.0,
        "output_tokens_per_request": (int(tout or 0) / n) if n else 0.0,
        "latency_ms_avg": float(lat_avg or 0.0),
    }


def _series(win: _Window, bucket: int) -> list[dict[str, Any]]:
    """Requests, spend, savings and errors per time bucket."""
    slot = "CAST(ts / ? AS INTEGER)" if win.store.dialect == "sqlite" else "FLOOR(ts / ?)"
    # The bucket width comes before the window's bound in this statement.
    rows = win.store.execute(
        f"""SELECT {slot} AS b, COUNT(*), SUM(cost_pico), SUM(counterfactual_pico), SUM(saved_pico),
            SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) FROM requests WHERE ts >= ? GROUP BY b ORDER BY b""",
        [bucket, win.since],
    )
    return [
        {
            "t": int(b) * bucket,
            "requests": int(r),
            "cost": _usd(c),
            "counterfactual_cost": _usd(f),
            "saved": _usd(s),
            "errors": int(e or 0),
        }
        for b, r, c, f, s, e in rows
    ]


def _grouped(win: _Window, expr: str, limit: int = 10) -> list[dict[str, Any]]:
    """The top `limit` values of `expr` (a column of ours, never user text) by spend."""
    rows = win.rows(
        f"""SELECT {expr} AS k, COUNT(*), SUM(cost_pico), SUM(saved_pico),
            SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)
            FROM requests {{w}} GROUP BY k ORDER BY SUM(cost_pico) DESC, COUNT(*) DESC LIMIT {int(limit)}"""
    )
    return [
        {"name": str(k), "requests": int(r), "cost": _usd(c), "saved": _usd(s), "errors": int(e or 0)}
        for k, r, c, s, e in rows
    ]


def _savings(win: _Window) -> tuple[dict[str, float], dict[str, int], int]:
    """Dollars and tokens saved per lever, and how many requests a cascade escalated."""
    savings: dict[str, float] = {}
    tokens_saved: dict[str, int] = {}
    escalated = 0
    for sv, ts_json, extra in win.rows(
        "SELECT savings, tokens_saved, extra FROM requests {w} AND (saved_pico <> 0 OR extra LIKE ?)",
        ['%"escalat%'],
    ):
        for lever, amount in orjson.loads(sv or "{}").items():
            savings[lever] = savings.get(lever, 0.0) + float(Decimal(str(amount)))
        for lever, count in orjson.loads(ts_json or "{}").items():
            tokens_saved[lever] = tokens_saved.get(lever, 0) + int(count)
        if extra and _escalated(orjson.loads(extra)):
            escalated += 1
    return savings, tokens_saved, escalated


def _cache(win: _Window) -> dict[str, Any]:
    """Cache outcomes, the hit rate of the requests that looked, and who answered."""
    cache = {str(k): int(c) for k, c in win.rows("SELECT COALESCE(cache, 'none'), COUNT(*) FROM requests {w} GROUP BY 1")}
    looked_up = cache.get("hit", 0) + cache.get("miss", 0)
    answered = {
        str(k): int(c)
        for k, c in win.rows("SELECT answered_by, COUNT(*) FROM requests {w} AND answered_by IS NOT NULL GROUP BY 1")
    }
    return {
        "outcomes": cache,
        "hit_rate": (cache.get("hit", 0) / looked_up) if looked_up else None,
        "answered_by": answered,
    }


def _routing(win: _Window, n: int, escalated: int) -> dict[str, Any]:
    """Requested against served models, and how often routing moved or escalated a request."""
    mix: list[dict[str, Any]] = [
        {"requested": str(rq), "served": str(sv), "requests": int(c), "cost": _usd(cp)}
        for rq, sv, c, cp in win.rows(
            """SELECT requested_model, served_model, COUNT(*), SUM(cost_pico) FROM requests {w}
                GROUP BY requested_model, served_model ORDER BY COUNT(*) DESC LIMIT 20"""
        )
    ]
    rerouted = sum(r["requests"] for r in mix if r["requested"] != r["served"])
    return {
        "mix": mix,
        "rerouted": rerouted,
        "rerouted_rate": (rerouted / n) if n else 0.0,
        "escalated": escalated,
        "escalation_rate": (escalated / n) if n else 0.0,
    }


def _latency(win: _Window) -> dict[str, float | None]:
    """p50 / p90 / p99 over the newest `LATENCY_SAMPLE` rows of the window."""
    lat = np.array(
        [r[0] for r in win.rows(f"SELECT latency_ms FROM requests {{w}} ORDER BY ts DESC LIMIT {LATENCY_SAMPLE}")],
        dtype=np.float64,
    )
    return {f"p{q}": (float(np.percentile(lat, q)) if lat.size else None) for q in (50, 90, 99)}


def _errors(win: _Window) -> dict[str, list[dict[str, Any]]]:
    """Failed requests by status, and the ten newest."""
    status = [
        {"status": int(s), "requests": int(c)}
        for s, c in win.rows(
            "SELECT status, COUNT(*) FROM requests {w} AND status >= 400 GROUP BY status ORDER BY COUNT(*) DESC"
        )
    ]
    recent = [
        {"ts": float(t), "model": str(m), "status": int(s), "error": (e or "")[:200]}
        for t, m, s, e in win.rows(
            """SELECT ts, requested_model, status, error FROM requests {w} AND status >= 400
                ORDER BY ts DESC LIMIT 10"""
        )
    ]
    return {"by_status": status, "recent": recent}


def _tasks(win: _Window, totals: dict[str, Any]) -> dict[str, Any]:
    """Agent tasks: how many, how many have an outcome, and cost per (successful) task."""
    (tasks, task_cost) = win.rows("SELECT COUNT(DISTINCT task), SUM(cost_pico) FROM requests {w} AND task IS NOT NULL")[0]
    success_true = "1" if win.store.dialect == "sqlite" else "TRUE"
    joined = "FROM requests r JOIN task_outcomes o ON o.task = r.task WHERE r.ts >= ?"
    (ok_tasks, ok_cost) = win.rows(
        f"SELECT COUNT(DISTINCT r.task), SUM(r.cost_pico) {joined} AND o.success = {success_true}"
    )[0]
    (with_outcome,) = win.rows(f"SELECT COUNT(DISTINCT r.task) {joined}")[0]
    # Cost per successful task charges every task's spend (failed ones too) to the successes.
    spent_on_judged = win.rows(f"SELECT SUM(r.cost_pico) {joined}")[0][0]
    n = totals["requests"]
    return {
        "tasks": int(tasks or 0),
        "with_outcome": int(with_outcome or 0),
        "successful": int(ok_tasks or 0),
        "cost_per_task": (_usd(task_cost) / int(tasks)) if tasks else None,
        "cost_of_successful_tasks": _usd(ok_cost),
        "cost_per_successful_task": (_usd(spent_on_judged) / int(ok_tasks)) if ok_tasks else None,
        "cost_per_request": (totals["cost"] / n) if n else None,
    }


def _escalated(extra: Any) -> bool:
    """A cascade that moved up a tier lists the tiers it refused in extra["escalations"]."""
    return isinstance(extra, dict) and bool(extra.get("escalations"))
