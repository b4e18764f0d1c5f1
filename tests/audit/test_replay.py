"""`thrifty replay` through the real pipeline and dispatch, answering from the log offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from thrifty.audit.cli import replay as replay_cmd
from thrifty.audit.replay import replay
from thrifty.config import parse_config

CANDIDATE = """
store: sqlite:///unused.db
models:
  - {name: big, provider: openai, base_url: "http://127.0.0.1:1/v1", price: {input: 10, output: 30}}
  - {name: small, provider: openai, base_url: "http://127.0.0.1:1/v1", price: {input: 1, output: 2}}
"""


def _line(prompt: str, model: str, cost: float, labels: dict[str, bool] | None, **kw: Any) -> str:
    rec: dict[str, Any] = {
        "timestamp": 1_793_500_000,
        "request": {"model": model, "messages": [{"role": "user", "content": prompt}], **kw},
        "response": {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "answer"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500},
        },
        "cost": cost,
    }
    if labels is not None:
        rec["labels"] = {"correct": labels}
    return json.dumps(rec)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join([
        _line("q1", "big", 0.025, {"big": True, "small": False}),
        _line("q2", "big", 0.025, {"big": True, "small": True}),
        _line("q3", "big", 0.025, None, max_tokens=100),
        json.dumps({"timestamp": 1, "request": {"model": "big", "messages": []}, "status": 500, "cost": 0}),
        "{cut",
        _line("q4", "legacy-model", 0.5, None),
    ]) + "\n")  # fmt: skip
    return path


async def test_replay_prices_recorded_answers_at_the_candidate_model(log: Path) -> None:
    config = parse_config(CANDIDATE)
    res = await replay(str(log), config, model_map={"*": "small"})
    assert res.requests == 5 and res.replayed == 4 and res.failed == 0 and res.remapped == 4
    assert res.bad_lines == 1 and res.bad_examples[0][0] == 5
    # 1000 in + 500 out at small's $1/$2 per 1M = $0.002, except q3 capped at 100 output tokens
    assert res.candidate_cost == pytest.approx(3 * 0.002 + (1000 * 1 + 100 * 2) / 1e6)
    assert res.actual_cost == pytest.approx(0.075 + 0.5)
    assert res.served == {"small": 4}
    assert (res.labelled, res.actual_correct, res.candidate_correct) == (2, 2, 1)


async def test_unconfigured_models_are_reported_not_guessed(log: Path) -> None:
    res = await replay(str(log), parse_config(CANDIDATE))
    assert res.replayed == 3 and res.failed == 1
    assert "legacy-model" in res.failures[0][1]
    assert res.candidate_cost == pytest.approx(2 * 0.025 + (1000 * 10 + 100 * 30) / 1e6)
    assert (res.labelled, res.actual_correct, res.candidate_correct) == (2, 2, 2)


def test_replay_command(log: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "candidate.yaml"
    cfg.write_text(CANDIDATE)
    out = tmp_path / "replay.json"
    result = CliRunner().invoke(
        replay_cmd, [str(log), "--config", str(cfg), "--model-map", "*=small", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "candidate" in result.output and "quality on 2 labelled requests" in result.output
    assert json.loads(out.read_text())["replayed"] == 4
    bad = CliRunner().invoke(replay_cmd, [str(log), "--config", str(cfg), "--model-map", "*=nope"])
    assert bad.exit_code != 0 and "does not configure" in bad.output
