import json
import sqlite3
from pathlib import Path

from thrifty.compress.reports import prefix_cache_hit_rate, tokens_saved_by_route, truncation_by_route
from thrifty.ledger.record import COLUMNS, schema_sql
from thrifty.ledger.store import LedgerStore, open_store


def write_ledger(path: Path, rows: list[dict[str, object]]) -> None:
    conn = sqlite3.connect(path)
    for ddl in schema_sql("sqlite"):
        conn.execute(ddl)
    defaults: dict[str, object] = {c: 0 for c in COLUMNS}
    defaults.update(protocol="openai", requested_model="m", served_model="m", provider="p", status=200, outcome="ok",
                    tenant="t", route="default", tags="{}", savings="{}", tokens_saved="{}", extra="{}",
                    answered_by=None, finish_reason="stop", ts=1.0)  # fmt: skip
    for i, row in enumerate(rows):
        values = {**defaults, "request_id": f"r{i}", **row}
        conn.execute(f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                     [values[c] for c in COLUMNS])  # fmt: skip
    conn.commit()
    conn.close()


def ledger(tmp_path: Path, rows: list[dict[str, object]]) -> LedgerStore:
    write_ledger(tmp_path / "ledger.db", rows)
    return open_store(f"sqlite:///{tmp_path}/ledger.db")


def test_prefix_cache_hit_rate_per_route(tmp_path: Path) -> None:
    store = ledger(tmp_path, [
        {"route": "docs", "input_tokens": 100, "cache_read_tokens": 900},
        {"route": "docs", "input_tokens": 100, "cache_write_tokens": 900},
        {"route": "chat", "input_tokens": 50},
        {"route": "chat", "input_tokens": 0, "cache_read_tokens": 0, "answered_by": "cache"},
    ])  # fmt: skip
    rates = {r.route: r for r in prefix_cache_hit_rate(store)}
    assert rates["docs"].token_hit_rate == 0.45 and rates["docs"].request_hit_rate == 0.5
    assert rates["chat"].requests == 1 and rates["chat"].token_hit_rate == 0.0


def test_truncation_by_route_separates_capped_rows(tmp_path: Path) -> None:
    capped = json.dumps({"capped": True})
    store = ledger(tmp_path, [
        {"route": "chat", "finish_reason": "length", "extra": capped},
        {"route": "chat", "finish_reason": "stop", "extra": capped},
        {"route": "chat", "finish_reason": "length"},
        {"route": "chat", "finish_reason": "stop"},
        {"route": "claude", "finish_reason": "max_tokens", "extra": capped},
    ])  # fmt: skip
    report = {t.route: t for t in truncation_by_route(store)}
    assert report["chat"].capped_truncation_rate == 0.5 and report["chat"].truncation_rate == 0.5
    assert report["claude"].capped_truncated == 1


def test_tokens_saved_by_route(tmp_path: Path) -> None:
    store = ledger(tmp_path, [
        {"route": "rag", "tokens_saved": json.dumps({"compress.context": 700, "compress.trim": 5, "cache": 10})},
        {"route": "rag", "tokens_saved": json.dumps({"compress.context": 300})},
    ])  # fmt: skip
    assert tokens_saved_by_route(store) == {"rag": {"compress.context": 1000, "compress.trim": 5}}


def test_cli_prints_the_report(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from thrifty.compress.cli import compress_report

    path = tmp_path / "ledger.db"
    write_ledger(path, [{"route": "docs", "input_tokens": 100, "cache_read_tokens": 300, "finish_reason": "length",
                   "extra": json.dumps({"capped": True}), "tokens_saved": json.dumps({"compress.trim": 12})}])  # fmt: skip
    result = CliRunner().invoke(compress_report, ["--store", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert "75.0%" in result.output and "100.0%" in result.output and "compress.trim" in result.output
