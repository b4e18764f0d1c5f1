""" "Use my traffic": the workload measured from a real SQLite ledger and from a JSONL audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.store import SQLiteStore
from thrifty.planner.traffic import measure
from thrifty.planner.workload import workload_from

DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()


def _records() -> list[LedgerRecord]:
    """Two days: 10 requests an hour from 9 to 17 UTC, 2 an hour otherwise; every 4th a cache hit,
    every 5th other one routed to a small model, and 3 errors that are not traffic."""
    out = []
    n = 0
    for day in range(2):
        for hour in range(24):
            for k in range(10 if 9 <= hour < 17 else 2):
                ts = DAY0 + day * 86400 + hour * 3600 + k * 60
                hit = n % 4 == 0
                routed = not hit and n % 5 == 1
                out.append(LedgerRecord(
                    request_id=f"r{n}", ts=ts, protocol="openai", requested_model="gpt-4o",
                    served_model="gpt-4o-mini" if routed else "gpt-4o", provider="openai", status=200, outcome="ok",
                    cache="hit" if hit else "miss", answered_by="cache" if hit else None,
                    input_tokens=0 if hit else 1000 + n % 7, output_tokens=0 if hit else 200,
                    cost=Decimal(0) if hit else Decimal("0.004"), counterfactual_cost=Decimal("0.004"),
                    savings={"cache": Decimal("0.004")} if hit else ({"route": Decimal("0.003")} if routed else {}),
                    latency_ms=100.0,
                ))  # fmt: skip
                n += 1
    for i in range(3):
        out.append(LedgerRecord(request_id=f"e{i}", ts=DAY0 + 1000 + i, protocol="openai", requested_model="gpt-4o",
                                served_model="gpt-4o", provider="openai", status=502, outcome="error",
                                error="upstream down", cost=Decimal(0), counterfactual_cost=Decimal(0)))  # fmt: skip
    return out


def test_a_workload_measured_from_the_ledger(tmp_path: Path) -> None:
    records = _records()
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    store.write(records)
    store.close()
    t = measure(str(tmp_path / "ledger.db"))
    ok = [r for r in records if r.outcome == "ok"]
    assert t.requests == len(ok) == 2 * (8 * 10 + 16 * 2) and t.errors == 3
    assert t.hourly[9] == 20 and t.hourly[3] == 4
    s = t.summary()
    assert s["cache_hit_rate"] == pytest.approx(sum(r.cache == "hit" for r in ok) / len(ok))
    assert s["routed_share"] == pytest.approx(sum("route" in r.savings for r in ok) / len(ok))
    assert s["input_tokens"]["mean"] == pytest.approx(
        sum(r.input_tokens for r in ok if r.cache != "hit") / sum(r.cache != "hit" for r in ok)
    )
    assert s["output_tokens"]["mean"] == 200
    assert s["savings"]["cache"] == pytest.approx(0.004 * sum(r.cache == "hit" for r in ok))
    # the log spans two days less the last quiet hour's tail: the rate is requests over that span
    span = (max(r.ts for r in ok) - min(r.ts for r in ok)) / 86400
    assert s["requests_per_day"] == pytest.approx(len(ok) / span)
    w = workload_from(t.workload_fields())
    assert w.model == "gpt-4o" and w.hourly is not None and w.peak_ratio == pytest.approx(20 / (224 / 24))
    assert w.levers.cache_hit_rate == pytest.approx(s["cache_hit_rate"]) and w.source.startswith(
        "measured from"
    )


def test_a_workload_measured_from_an_openai_jsonl_audit_log(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    with log.open("w") as f:
        for i in range(48):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}]}
            usage = {"prompt_tokens": 300 + i, "completion_tokens": 40}
            resp = {
                "model": "gpt-4o-mini",
                "usage": usage,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
            }
            f.write(json.dumps({"request": body, "response": resp, "timestamp": DAY0 + i * 1800}) + "\n")
        f.write("{not json\n")
    t = measure(str(log))
    s = t.summary()
    assert t.requests == 48 and t.bad_lines == 1
    assert s["input_tokens"]["mean"] == pytest.approx(300 + 47 / 2) and s["output_tokens"]["p90"] == 40
    assert s["model"] == "gpt-4o-mini" and s["cache_hit_rate"] == 0
    assert sum(t.hourly) == 48 and max(t.hourly) == 2
