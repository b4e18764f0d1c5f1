"""Fine-tuning export from a real SQLite ledger written by the core's store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from thrifty.evals.export import export_group
from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.store import open_store


def openai_row(i: int, prompt: str, answer: str, **kw: Any) -> LedgerRecord:
    finish = kw.pop("finish", "stop")
    defaults: dict[str, Any] = dict(
        request_id=f"r{i}", ts=1000.0 + i, protocol="openai", requested_model="big", served_model="big",
        provider="openai", status=200, outcome="ok", route="support",
        request_body={"model": "big", "messages": [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": prompt}]},
        response_body={"choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                    "finish_reason": finish}]},
    )  # fmt: skip
    defaults.update(kw)
    return LedgerRecord(**defaults)


def test_export_keeps_graded_good_reference_answers(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = open_store(f"sqlite:///{db}")
    rows = [openai_row(i, f"How do I reset password {i}?", f"Click 'Forgot password' ({i}).") for i in range(40)]
    rows += [
        openai_row(100, "How do I reset password 1?", "Newer answer for 1."),  # duplicate prompt, later
        openai_row(101, "  How do I   reset password 2? ", "dup with other spacing"),  # duplicate after normalising
        openai_row(102, "Cut short", "Click", finish="length"),
        openai_row(103, "Wrong model", "x", served_model="small"),
        openai_row(104, "Other route", "x", route="sales"),
        openai_row(105, "Failed", "x", status=500, outcome="error"),
        openai_row(106, "Bad outcome", "x", task="t-bad"),
        openai_row(107, "Good outcome", "Yes.", task="t-good"),
        openai_row(108, "No bodies", "x", request_body=None, response_body=None),
        LedgerRecord(
            request_id="a1", ts=2000.0, protocol="anthropic", requested_model="big", served_model="big",
            provider="anthropic", status=200, outcome="ok", route="support",
            request_body={"model": "big", "system": "Be kind.", "max_tokens": 50,
                          "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]},
            response_body={"content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn"},
        ),  # fmt: skip
    ]
    store.write(rows)
    store.record_outcome("t-bad", False, None, None, 1.0)
    store.record_outcome("t-good", True, 1.0, None, 1.0)
    store.close()

    out = tmp_path / "out"
    result = CliRunner().invoke(
        export_group, ["finetune", "--route", "support", "--ledger", str(db), "--model", "big", "-o", str(out),
                       "--validation", "0.25"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    examples = train + val
    assert len(examples) == 42  # 40 prompts + "Good outcome" + the Anthropic row
    assert 3 <= len(val) <= 20 and train
    prompts = [e["messages"][-2]["content"] for e in examples]
    assert len(set(prompts)) == len(prompts)
    by_prompt = {e["messages"][-2]["content"]: e for e in examples}
    assert by_prompt["How do I reset password 1?"]["messages"][-1] == {"role": "assistant", "content": "Newer answer for 1."}
    assert by_prompt["Hi there"]["messages"] == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
    ]  # fmt: skip
    for bad in ("Cut short", "Wrong model", "Other route", "Failed", "Bad outcome", "No bodies"):
        assert bad not in by_prompt
    assert "dropped 2: duplicate prompt" in result.output
    assert "task outcome: failure" in result.output

    # the split is a function of the prompt: a second run gives the same files
    again = tmp_path / "again"
    CliRunner().invoke(export_group, ["finetune", "--route", "support", "--ledger", str(db), "--model", "big",
                                      "-o", str(again), "--validation", "0.25"])  # fmt: skip
    assert (again / "validation.jsonl").read_text() == (out / "validation.jsonl").read_text()

    # --require-grade keeps only rows with a recorded success; a regex grader filters answers
    strict = CliRunner().invoke(export_group, ["finetune", "--route", "support", "--ledger", str(db), "--model", "big",
                                               "-o", str(tmp_path / "s"), "--require-grade"])  # fmt: skip
    assert strict.exit_code == 0
    assert "1 train, 0 validation" in strict.output or "0 train, 1 validation" in strict.output
    graded = CliRunner().invoke(export_group, ["finetune", "--route", "support", "--ledger", str(db), "--model", "big",
                                               "-o", str(tmp_path / "g"), "--validation", "0",
                                               "--grader", '{"type": "regex", "pattern": "Forgot"}'])  # fmt: skip
    assert graded.exit_code == 0 and "40 train" in graded.output, graded.output
