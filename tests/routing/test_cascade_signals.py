"""The live cascade on answer signals: GSM8K answers replayed through the gateway's pipeline."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.routing.gsm8k_cascade import CHEAP, STRONG, cascade_config, cascade_files, serve
from thrifty.config import ConfigError, parse_config
from thrifty.gateway import Gateway
from thrifty.routing.cascade_eval import CascadeConfig, train_cascade
from thrifty.routing.labeled import load_labeled, write_labeled
from thrifty.routing.stage import RouteStage


@pytest.fixture(scope="module")
def files(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return cascade_files(routing_data, tmp_path_factory.mktemp("signals"))


async def gateway(files: dict[str, Path], cascade: str) -> Gateway:
    text = cascade_config(files, f'signals: "{files["cascade"]}", {cascade}')
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    await gw.start(ledger=False)
    return gw


async def test_a_trusted_cheap_answer_is_served_and_paid_once(files: dict[str, Path]) -> None:
    gw = await gateway(files, "accept: 0.0")
    ex = load_labeled(files["test"])[3]
    ctx, text = await serve(gw, ex)
    assert ctx.target_model == CHEAP and text == ex.candidates[CHEAP].response
    info = ctx.route_decision.cascade
    assert info["accepted"] == CHEAP and info["stage"] == 0 and info["signals"] == "numeric"
    assert 0.0 <= info["score"] <= 1.0
    assert ctx.side_cost == 0 and ctx.route_decision.escalations == []


async def test_extra_samples_are_side_cost(files: dict[str, Path]) -> None:
    gw = await gateway(files, "accept: 0.0, samples: 3")
    ex = load_labeled(files["test"])[3]
    ctx, _ = await serve(gw, ex)
    assert ctx.route_decision.cascade["answers"] == 3
    # One sample is the reply; the two others were paid for on top of it.
    assert ctx.side_cost == 2 * ex.candidates[CHEAP].cost


async def test_a_doubted_answer_escalates_with_its_cost(files: dict[str, Path]) -> None:
    gw = await gateway(files, "accept: 1.0")
    ex = load_labeled(files["test"])[3]
    ctx, text = await serve(gw, ex)
    assert ctx.target_model == STRONG and text == ex.candidates[STRONG].response
    (esc,) = ctx.route_decision.escalations
    assert esc["stage"] == 0 and esc["best"] == CHEAP and esc["reason"].startswith("score ")
    assert Decimal(esc["cost"]) == ex.candidates[CHEAP].cost == ctx.side_cost


async def test_the_routes_verifier_rejects_whatever_the_score(files: dict[str, Path]) -> None:
    gw = await gateway(files, "accept: 0.0, verify: {regex: 'NEVER-THERE'}")
    ex = load_labeled(files["test"])[3]
    ctx, _ = await serve(gw, ex)
    assert ctx.target_model == STRONG
    assert ctx.route_decision.escalations[0]["reason"] == "does not match the route's regex"


def test_signals_and_scorer_exclude_each_other(files: dict[str, Path]) -> None:
    text = f"""
models:
  - {{name: {CHEAP}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
route:
  cascade: {{signals: "{files["cascade"]}", scorer: "{files["cascade"]}"}}
"""
    with pytest.raises(ConfigError, match="either `scorer` or `signals`"):
        RouteStage.build(Gateway(parse_config(text)))


async def test_the_ledger_row_carries_every_sample(files: dict[str, Path], tmp_path: Path) -> None:
    """Over real HTTP: two samples asked, one served; the row's cost is both, its saving net of both."""
    import sqlite3

    import aiohttp

    from tests.conftest import serving
    from thrifty.server.app import create_app

    text = cascade_config(files, f'signals: "{files["cascade"]}", accept: 0.0, samples: 2', tmp_path / "ledger.db")
    ex = load_labeled(files["test"])[5]
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    async with serving(create_app(gw)) as port, aiohttp.ClientSession() as http:
        body = {"model": STRONG, "messages": [{"role": "user", "content": ex.text}]}
        async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
            assert data["choices"][0]["message"]["content"] == ex.candidates[CHEAP].response
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        ((served, cost, counterfactual),) = db.execute(
            "SELECT served_model, cost_pico, counterfactual_pico FROM requests"
        ).fetchall()
    pico = Decimal(10) ** 12
    assert served == CHEAP
    assert Decimal(cost) / pico == (2 * ex.candidates[CHEAP].cost).quantize(Decimal("1e-12"))
    assert Decimal(counterfactual) / pico == ex.candidates[STRONG].cost.quantize(Decimal("1e-12"))


async def test_code_answers_run_against_the_routes_tests(routing_data: Path, tmp_path: Path) -> None:
    """MBPP: two cheap models asked at once, their code compared in the sandbox; the route's
    tests decide whether any of it may be served."""
    from thrifty.routing.datasets import convert_routerbench

    cheap = ["gpt-3.5-turbo-1106", "mistralai/mixtral-8x7b-chat"]
    strong = "gpt-4-1106-preview"
    train = convert_routerbench(routing_data / "routerbench" / "mbpp_train.csv").examples[:40]
    test = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv").examples[:3]
    art, _ = train_cascade(train, CascadeConfig([cheap, [strong]], "code"))
    art.save(tmp_path / "code.pkl")
    write_labeled(test, tmp_path / "t.jsonl")
    ex = test[0]
    for tests, served in (("assert 1 + 1 == 2", cheap), ("assert 1 + 1 == 3", [strong])):
        text = f"""
models:
  - {{name: {cheap[0]}, provider: replay, options: {{dataset: "{tmp_path / "t.jsonl"}"}}}}
  - {{name: {cheap[1]}, provider: replay, options: {{dataset: "{tmp_path / "t.jsonl"}"}}}}
  - {{name: {strong}, provider: replay, options: {{dataset: "{tmp_path / "t.jsonl"}"}}}}
route:
  cascade: {{signals: "{tmp_path / "code.pkl"}", accept: 0.0, verify: {{tests: "{tests}"}}}}
"""
        gw = Gateway(parse_config(text, source="thrifty.yaml"))
        await gw.start(ledger=False)
        ctx, answer = await serve(gw, ex)
        assert ctx.target_model in served and answer == ex.candidates[ctx.target_model].response
        if served == [strong]:
            (esc,) = ctx.route_decision.escalations
            assert esc["reason"] == "fails the route's tests" and esc["answers"] == 2
            cost = ex.candidates[cheap[0]].cost + ex.candidates[cheap[1]].cost
            assert Decimal(esc["cost"]) == cost == ctx.side_cost
        else:
            assert ctx.route_decision.cascade["signals"] == "code"
