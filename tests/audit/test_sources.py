"""Reading logs: OpenAI-format JSONL, LiteLLM spend logs (JSON array and JSONL), thrifty's ledger.

Bad input is counted and reported by line number; it never stops the read.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.audit.row import AuditRow
from thrifty.audit.sources import LogSource, TaskOutcome, detect_format, parse_time
from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.store import PostgresStore, SQLiteStore


def _chat(model: str, prompt: str, out_tokens: int = 5, finish: str = "stop") -> dict[str, object]:
    return {
        "request": {"model": model, "messages": [{"role": "user", "content": prompt}]},
        "response": {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": out_tokens, "prompt_tokens_details": {"cached_tokens": 4}},
        },
    }


def test_jsonl_rows_and_bad_lines_with_their_numbers(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    lines = [
        json.dumps({**_chat("gpt-4o-mini", "hi"), "timestamp": "2026-11-01T10:00:00Z", "tags": {"feature": "qa"}}),
        json.dumps({**_chat("gpt-4o", "yo", finish="length"), "timestamp": 1793527200, "cost": 0.25}),
        "",
        '{"request": {"model": "gpt-4o", "messages": [',  # cut short
        "[1, 2, 3]",
        json.dumps({"task": "t1", "success": True, "score": 0.9}),
        json.dumps({"timestamp": 5}),
        "not json at all",
    ]
    log.write_text("\n".join(lines) + "\n")
    src = LogSource(str(log))
    assert src.format == "jsonl"
    items = list(src)
    rows = [i for i in items if isinstance(i, AuditRow)]
    assert [r.model for r in rows] == ["gpt-4o-mini", "gpt-4o"]
    assert rows[0].ts == parse_time("2026-11-01T10:00:00+00:00") and rows[0].feature == "qa"
    assert (rows[0].input_tokens, rows[0].cached_tokens, rows[0].output_tokens) == (10, 4, 5)
    assert rows[0].cost is None and rows[1].cost == 0.25
    assert rows[1].finish_reason == "length" and rows[1].line == 2
    assert [i for i in items if isinstance(i, TaskOutcome)] == [TaskOutcome("t1", True, 0.9)]
    assert src.bad.count == 4
    assert [n for n, _ in src.bad.examples] == [4, 5, 7, 8]
    assert "not JSON" in src.bad.examples[0][1]


def _litellm_row(i: int, model: str = "gpt-4o") -> dict[str, object]:
    return {
        "request_id": f"chatcmpl-{i}", "call_type": "acompletion", "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
        "spend": 0.0123, "total_tokens": 30, "prompt_tokens": 20, "completion_tokens": 10,
        "startTime": "2026-11-02 09:00:00", "endTime": "2026-11-02 09:00:01.5", "model": model,
        "model_group": "gpt-4o", "user": "", "metadata": {"user_api_key_alias": "search-svc", "status": "success"},
        "cache_hit": "False", "cache_key": "", "request_tags": ["feature:search", "route:web"],
        "messages": [{"role": "user", "content": f"question {i}"}], "response": {}, "status": "success",
    }  # fmt: skip


def test_litellm_json_array_resyncs_after_a_broken_element(tmp_path: Path) -> None:
    good = [_litellm_row(i) for i in range(4)]
    text = json.dumps(good[:2], indent=2)[:-2]  # drop the closing "\n]"
    text += ',\n  {"request_id": "broken", "spend": 0.5,,,}'
    text += ",\n" + ",\n".join(json.dumps(r, indent=2).replace("\n", "\n  ") for r in good[2:]) + "\n]\n"
    path = tmp_path / "spend.json"
    path.write_text(text)
    assert detect_format(str(path)) == "litellm"
    src = LogSource(str(path))
    rows = [r for r in src if isinstance(r, AuditRow)]
    assert len(rows) == 4
    assert src.bad.count == 1
    broken_line = text[: text.index('"broken"')].count("\n") + 1
    assert src.bad.examples[0][0] == broken_line
    r = rows[0]
    assert (r.model, r.key, r.feature, r.route) == ("gpt-4o", "search-svc", "search", "web")
    assert r.cost == 0.0123 and (r.input_tokens, r.output_tokens) == (20, 10)
    assert r.latency_ms == pytest.approx(1500.0)
    assert r.prompt_text == "question 0" and r.fingerprint is not None


def test_litellm_jsonl_failure_rows_count_as_errors(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    rows = [_litellm_row(0), {**_litellm_row(1), "status": "failure", "spend": 0}, {"unrelated": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{oops\n")
    src = LogSource(str(path))
    assert src.format == "litellm"
    out = [r for r in src if isinstance(r, AuditRow)]
    assert [r.error for r in out] == [False, True]
    assert [n for n, _ in src.bad.examples] == [3, 4]


def _record(i: int, **kw: object) -> LedgerRecord:
    base: dict[str, object] = dict(
        request_id=f"req-{i}", ts=1_793_500_000.0 + i, protocol="openai", requested_model="gpt-4o",
        served_model="gpt-4o-mini" if i % 2 else "gpt-4o", provider="openai", status=200, outcome="ok",
        key_name="app", route="chat", feature="qa", task=f"task-{i % 3}", input_tokens=100, output_tokens=20,
        cost=Decimal("0.001"), counterfactual_cost=Decimal("0.003"), savings={"route": Decimal("0.002")},
        latency_ms=120.0, finish_reason="stop",
        request_body={"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i % 4}"}]},
    )  # fmt: skip
    base.update(kw)
    return LedgerRecord(**base)  # type: ignore[arg-type]


def _check_ledger_rows(location: str) -> None:
    src = LogSource(location)
    assert src.format == "ledger"
    items = list(src)
    rows = [r for r in items if isinstance(r, AuditRow)]
    outcomes = [r for r in items if isinstance(r, TaskOutcome)]
    assert len(rows) == 6 and src.bad.count == 0
    assert rows[1].model == "gpt-4o-mini" and rows[0].key == "app" and rows[0].task == "task-0"
    assert sum(r.cost or 0 for r in rows) == pytest.approx(0.006)
    assert rows[0].savings == {"route": pytest.approx(0.002)}
    assert rows[0].fingerprint == rows[4].fingerprint != rows[1].fingerprint
    assert sorted((o.task, o.success) for o in outcomes) == [("task-0", True), ("task-1", False)]


def test_sqlite_ledger(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = SQLiteStore(str(db))
    store.write([_record(i) for i in range(6)])
    store.record_outcome("task-0", True, 1.0, None, time.time())
    store.record_outcome("task-1", False, None, "wrong answer", time.time())
    store.close()
    _check_ledger_rows(str(db))


def test_postgres_ledger() -> None:
    psycopg = pytest.importorskip("psycopg")
    base = "postgresql://127.0.0.1:5432/test"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {base}: {exc}")
    schema = f"audit_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}?options=-csearch_path%3D{schema}"
    try:
        store = PostgresStore(url)
        store.write([_record(i) for i in range(6)])
        store.record_outcome("task-0", True, 1.0, None, time.time())
        store.record_outcome("task-1", False, None, None, time.time())
        store.close()
        _check_ledger_rows(url)
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_parse_time_forms() -> None:
    assert parse_time(1_793_500_000) == 1_793_500_000.0
    assert parse_time(1_793_500_000_000) == 1_793_500_000.0  # milliseconds
    assert parse_time("2026-11-01T00:00:00Z") == parse_time("2026-11-01 00:00:00")
    assert parse_time("yesterday") is None and parse_time(None) is None
