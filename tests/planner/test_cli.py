"""`thrifty plan` from flags, from a YAML workload, from a ledger, as JSON, and when it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.planner.test_traffic import _records
from thrifty.cli import main
from thrifty.ledger.store import SQLiteStore


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    return result.exit_code, result.output


def test_plan_from_flags_prints_the_waterfall_options_and_a_recommendation() -> None:
    code, out = _run("--requests-per-day", "100000", "--input-tokens", "1500", "--output-tokens", "500",
                     "--model", "gpt-4-turbo", "--cache-hit-rate", "0.3", "--selfhost-model", "llama-3.1-8b")  # fmt: skip
    assert code == 0, out
    assert "$90,000" in out and "$27,000" in out  # the bill, and what a 30% hit rate saves
    assert "Self-hosting Llama 3.1 8B" in out and "Recommendation:" in out and "calibrated" in out


def test_plan_from_yaml_with_flags_winning(tmp_path: Path) -> None:
    wl = tmp_path / "workload.yaml"
    wl.write_text("requests_per_month: 1000000\nprice_per_request: 0.05\nlevers: {cache_hit_rate: 0.3}\n"
                  "selfhost: {model: llama-3.1-8b, gpus: [L4], precisions: [fp8]}\n")  # fmt: skip
    code, out = _run(str(wl), "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["bill"]["base"] == pytest.approx(50_000) and plan["bill"]["steps"][0][
        "saved"
    ] == pytest.approx(15_000)
    assert plan["workload"]["source"] == str(wl)
    assert [o["gpu"] for o in plan["selfhost"]["options"]] == ["L4"]
    code, out = _run(str(wl), "--json", "--cache-hit-rate", "0.5")
    assert json.loads(out)["bill"]["steps"][0]["saved"] == pytest.approx(25_000)


def test_plan_from_the_ledger(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    store.write(_records())
    store.close()
    code, out = _run("--traffic", str(tmp_path / "ledger.db"), "--json")
    assert code == 0, out
    w = json.loads(out)["workload"]
    assert w["model"] == "gpt-4o" and w["hourly"][9] == 20 and w["levers"]["cache_hit_rate"] > 0.2
    assert json.loads(out)["traffic"]["requests"] == sum(r.outcome == "ok" for r in _records())
    code, out = _run("--traffic", str(tmp_path / "ledger.db"), "--requests-per-month", "3000")
    flat = " ".join(out.split())  # rich wraps lines to the terminal's width
    assert code == 0 and "Measured traffic" in flat and "Workload (measured from" in flat, out
    assert "100 requests/day of 1,003 in + 200 out tokens on gpt-4o" in flat  # the flag won over the ledger
    code, out = _run("--traffic", str(tmp_path / "missing.db"))
    assert code != 0 and "missing.db" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--requests-per-day", "-3"], "requests_per_day"),
        (["--requests-per-day", "1000", "--selfhost-model", "gpt-9"], "unknown open-weight model 'gpt-9'"),
        ([], "give --requests-per-day"),
    ],
)
def test_impossible_workloads_exit_with_a_message(args: list[str], message: str) -> None:
    code, out = _run(*args)
    assert code != 0 and message in out, out


def test_a_model_that_fits_no_gpu_is_explained_not_priced() -> None:
    code, out = _run(
        "--requests-per-day",
        "1000",
        "--selfhost-model",
        "llama-3.1-405b",
        "--gpu",
        "L4",
        "--precision",
        "fp16",
    )
    assert code == 0 and "no GPU of the catalog can serve it" in out and "Stay on the API" in out


def test_a_claim_beyond_the_bandwidth_bound_is_flagged() -> None:
    code, out = _run("--requests-per-day", "1000", "--claim", "llama-3.3-70b:H100:120:1:fp8", "--json")
    assert code == 0, out
    (flag,) = json.loads(out)["flags"]
    assert (
        flag["claimed"] == 120 and flag["bound"] == pytest.approx(47.5, abs=0.1) and "2.5x" in flag["message"]
    )


def test_the_shipped_example_workload_plans() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "plan" / "workload.yaml"
    code, out = _run(str(example), "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["workload"]["levers"]["route_model"] == "gpt-4o-mini" and len(plan["workload"]["hourly"]) == 24
    assert all(o["autoscaled_cost"] is not None for o in plan["selfhost"]["options"])
