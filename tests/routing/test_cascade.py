"""The cascade over recorded MBPP answers: cheap tier first, escalate when the scorer doubts it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from thrifty.config import ConfigError, parse_config
from thrifty.gateway import Gateway
from thrifty.protocol.view import answer_text
from thrifty.routing.cascade import mean_logprob, simulate, train_scorer
from thrifty.routing.datasets import convert_routerbench
from thrifty.routing.features import FeatureSpec
from thrifty.routing.labeled import Example, load_labeled, write_labeled
from thrifty.routing.stage import RouteStage
from thrifty.types import Context, Reply

CHEAP, STRONG = "gpt-3.5-turbo-1106", "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def files(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cascade")
    tr = convert_routerbench(routing_data / "routerbench" / "mbpp_train.csv").examples
    te = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv").examples
    write_labeled(te, d / "test.jsonl")
    art, oof = train_scorer(tr, [CHEAP], spec=FeatureSpec(embedding=None))
    assert art.kind == "scorer" and oof[CHEAP].shape == (len(tr),)
    art.save(d / "scorer.pkl")
    return {"test": d / "test.jsonl", "scorer": d / "scorer.pkl"}


async def gateway(files: dict[str, Path], accept: float) -> Gateway:
    text = f"""
models:
  - {{name: {CHEAP}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
route:
  default: {STRONG}
  cascade: {{tiers: [{CHEAP}, {STRONG}], scorer: "{files["scorer"]}", accept: {accept}}}
"""
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    await gw.start(ledger=False)
    return gw


def request(gw: Gateway, ex: Example) -> Context:
    body = {"model": STRONG, "messages": [{"role": "user", "content": ex.text}]}
    return Context(protocol="openai", body=body, config=gw.config, requested_model=STRONG)


async def test_accepted_cheap_answer(files: dict[str, Path]) -> None:
    gw = await gateway(files, accept=0.0)
    ex = load_labeled(files["test"])[7]
    ctx = request(gw, ex)
    assert gw.pipeline is not None
    reply = await gw.pipeline(ctx)
    assert ctx.target_model == CHEAP and answer_text(reply.body) == ex.candidates[CHEAP].response
    assert ctx.route_decision is not None and ctx.route_decision.escalations == []
    # The accepted side call is the request's own cost now, not a side cost on top of it.
    assert ctx.side_cost == 0 and reply.cost == ex.candidates[CHEAP].cost
    assert ctx.savings["route"] == ex.candidates[STRONG].cost - ex.candidates[CHEAP].cost
    assert 0.0 <= ctx.route_decision.cascade["score"] <= 1.0


async def test_escalation_is_recorded_with_its_cost(files: dict[str, Path]) -> None:
    gw = await gateway(files, accept=1.0)  # no answer scores 1.0: always escalate
    ex = load_labeled(files["test"])[7]
    ctx = request(gw, ex)
    assert gw.pipeline is not None
    reply = await gw.pipeline(ctx)
    assert ctx.target_model == STRONG and answer_text(reply.body) == ex.candidates[STRONG].response
    (esc,) = ctx.route_decision.escalations
    assert esc["model"] == CHEAP and Decimal(esc["cost"]) == ex.candidates[CHEAP].cost
    assert esc["reason"].startswith("score ")
    # The ledger row's cost is the reply plus the side cost: both tiers were paid for.
    assert ctx.side_cost == ex.candidates[CHEAP].cost
    assert ctx.savings["route"] == -ex.candidates[CHEAP].cost


async def test_scorer_must_cover_the_tiers(files: dict[str, Path]) -> None:
    text = f"""
models:
  - {{name: {CHEAP}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
route:
  cascade: {{tiers: [{STRONG}, {CHEAP}], scorer: "{files["scorer"]}"}}
"""
    with pytest.raises(ConfigError, match=f"has no model for tiers: {STRONG}"):
        RouteStage.build(Gateway(parse_config(text)))


def test_simulate_and_logprobs() -> None:
    scores = np.array([[0.9, 0.0], [0.2, 0.0]])
    quality = np.array([[1.0, 1.0], [0.0, 1.0]])
    cost = np.array([[1.0, 10.0], [1.0, 10.0]])
    q, c, used = simulate(scores, quality, cost, accept=0.5)
    assert (q, c, used.tolist()) == (1.0, 12.0, [0, 1])
    body = {
        "choices": [
            {"message": {"content": "x"}, "logprobs": {"content": [{"logprob": -0.5}, {"logprob": -1.5}]}}
        ]
    }
    assert mean_logprob(Reply(body=body)) == -1.0
    assert mean_logprob(Reply(body={"choices": [{"message": {"content": "x"}}]})) is None
