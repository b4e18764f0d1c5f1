"""Eval runs through a real in-process gateway, against a mock OpenAI server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result

from thrifty.config import load_config
from thrifty.evals.cli import EXIT_ERROR, EXIT_OK, EXIT_REGRESSED, eval_group
from thrifty.evals.runner import GatewayTarget, ResultCache, compare, run_set
from thrifty.evals.sets import load_set

from .conftest import MockOpenAI, write_config


def write_set(path: Path, n: int = 20, grader: dict | None = None) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i}", "prompt": f"What is {i}+{i * 3}?", "expected": f"#### {i * 4}",
                                "grader": grader or {"type": "numeric"}}) + "\n")
    return path


async def invoke(args: list[str]) -> Result:
    # the CLI runs its own event loop; the mock server keeps serving on this one
    return await asyncio.to_thread(CliRunner().invoke, eval_group, args, catch_exceptions=False)


async def test_run_caches_and_compares(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    items = load_set(write_set(tmp_path / "set.jsonl")).items
    cfg_a = load_config(write_config(tmp_path / "a.yaml", mock_openai.url, ["good-model"]))
    cfg_b = load_config(write_config(tmp_path / "b.yaml", mock_openai.url, ["flaky-model"]))
    cache = ResultCache(tmp_path / "cache.sqlite")
    async with GatewayTarget(cfg_a, "a") as target:
        run_a = await run_set(items, target, concurrency=4, cache=cache, progress=False)
    assert len(mock_openai.calls) == 20
    summary = run_a.summary()
    assert summary.quality.mean == 100 and summary.errors == 0
    # 100 input tokens at $1/M + 20 output tokens at $2/M = $0.00014 per item
    assert abs(summary.cost_total - 20 * 0.00014) < 1e-9
    async with GatewayTarget(cfg_a, "a") as target:
        again = await run_set(items, target, cache=cache, progress=False)
    assert len(mock_openai.calls) == 20 and all(r.cached for r in again.results.values())
    async with GatewayTarget(cfg_b, "b") as target:
        run_b = await run_set(items, target, cache=cache, progress=False)
    cmp = compare(run_a, run_b, max_drop_pp=1.0)
    assert cmp.delta_pp.mean == -50.0 and cmp.delta_pp.high < 0
    assert cmp.regressed
    assert {d.id for d in cmp.diffs} == {f"q{i}" for i in range(0, 20, 2)}
    assert all(d.kind == "regressed" for d in cmp.diffs)
    cache.close()


async def test_gate_exit_codes(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    set_path = str(write_set(tmp_path / "set.jsonl"))
    good = str(write_config(tmp_path / "good.yaml", mock_openai.url, ["good-model"]))
    good2 = str(write_config(tmp_path / "good2.yaml", mock_openai.url, ["good-model", "bad-model"]))
    bad = str(write_config(tmp_path / "bad.yaml", mock_openai.url, ["bad-model"]))
    common = ["--set", set_path, "--cache", str(tmp_path / "c.sqlite"), "-q"]
    same = await invoke(["gate", *common, "--config", good, "--against", good2, "--max-drop", "1.0"])
    assert same.exit_code == EXIT_OK, same.output
    assert "PASS" in same.output
    worse = await invoke(["gate", *common, "--config", good, "--against", bad, "--max-drop", "1.0",
                          "--report", str(tmp_path / "r.json")])
    assert worse.exit_code == EXIT_REGRESSED, worse.output
    assert "FAIL" in worse.output and "q0" in worse.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["comparison"]["regressed"] and len(report["comparison"]["diffs"]) == 20
    # a drop within a generous tolerance passes
    lenient = await invoke(["gate", *common, "--config", good, "--against", bad, "--max-drop", "100"])
    assert lenient.exit_code == EXIT_OK, lenient.output
    # a set where nothing can be graded: the gate refuses to decide
    judged = str(write_set(tmp_path / "judged.jsonl", 3, {"type": "judge", "rubric": "right sum", "model": "missing"}))
    unsure = await invoke(["gate", "--set", judged, "--config", good, "--against", bad, "--no-cache", "-q"])
    assert unsure.exit_code == EXIT_ERROR, unsure.output


async def test_malformed_lines_are_reported_and_skipped(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    path = write_set(tmp_path / "set.jsonl", 3)
    with path.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    good = str(write_config(tmp_path / "good.yaml", mock_openai.url, ["good-model"]))
    result = await asyncio.to_thread(
        CliRunner().invoke, eval_group, ["run", "--set", str(path), "--config", good, "--no-cache", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "set.jsonl:4: skipped: not valid JSON" in result.output
    assert len(mock_openai.calls) == 3


async def test_judge_through_gateway_and_judge_failure(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    items = load_set(write_set(tmp_path / "s.jsonl", 4, {"type": "judge", "rubric": "right sum", "model": "judge-model"})).items
    cfg = load_config(write_config(tmp_path / "a.yaml", mock_openai.url, ["good-model", "judge-model"]))
    async with GatewayTarget(cfg, "a") as target:
        ok = await run_set(items, target, progress=False)
        assert all(r.grade.status == "pass" for r in ok.results.values())
        mock_openai.judge_status = 503
        down = await run_set(items, target, progress=False)
    assert all(r.grade.status == "ungraded" and not r.grade.passed for r in down.results.values())
    assert down.summary().graded == 0


async def test_all_models_writes_router_labels(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    set_path = str(write_set(tmp_path / "set.jsonl", 4))
    cfg = str(write_config(tmp_path / "a.yaml", mock_openai.url, ["good-model", "bad-model"]))
    out = tmp_path / "labels.jsonl"
    result = await invoke(["run", "--set", set_path, "--config", cfg, "--all-models", "--labels", str(out), "-q",
                           "--cache", str(tmp_path / "c.sqlite")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    first = rows[1]
    assert first["prompt"] == "What is 1+3?"
    assert first["candidates"]["good-model"]["quality"] == 1.0
    assert first["candidates"]["bad-model"]["quality"] == 0.0
    assert first["candidates"]["good-model"]["cost"] > first["candidates"]["bad-model"]["cost"] > 0
    assert "#### 4" in first["candidates"]["good-model"]["response"]
