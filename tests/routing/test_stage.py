"""The route stage over real recorded answers: replay providers stand in for the model APIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thrifty.config import ConfigError, parse_config
from thrifty.errors import BadRequest
from thrifty.gateway import Gateway
from thrifty.pipeline.pipeline import Pipeline
from thrifty.routing.datasets import convert_routerbench
from thrifty.routing.features import FeatureSpec
from thrifty.routing.labeled import Example, load_labeled, write_labeled
from thrifty.routing.learned import train
from thrifty.routing.stage import RouteStage
from thrifty.types import Context

STRONG, CHEAP, TINY = "gpt-4-1106-preview", "gpt-3.5-turbo-1106", "mistralai/mistral-7b-chat"


@pytest.fixture(scope="module")
def files(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stage")
    tr = convert_routerbench(routing_data / "routerbench" / "mbpp_train.csv").examples
    te = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv").examples
    write_labeled(te, d / "test.jsonl")
    write_labeled(te[:10], d / "few.jsonl")
    art = train(
        tr,
        candidates=[STRONG, CHEAP, TINY],
        spec=FeatureSpec(embedding=None),
        target=1.0,
        reference=STRONG,
        repeats=1,
    )
    art.save(d / "router.pkl")
    return {"test": d / "test.jsonl", "few": d / "few.jsonl", "router": d / "router.pkl", "dir": d}


def config_text(files: dict[str, Path], route: str, tiny_dataset: str = "test") -> str:
    return f"""
models:
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
  - {{name: {CHEAP}, provider: replay, options: {{dataset: "{files["test"]}"}}, max_retries: 0}}
  - {{name: {TINY}, provider: replay, options: {{dataset: "{files[tiny_dataset]}"}}, max_retries: 0}}
route:
{route}
"""


async def make_gateway(text: str) -> Gateway:
    """A gateway with its real dispatch; replay providers stand in for the model APIs."""
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    await gw.start(ledger=False)
    assert gw.pipeline is not None and gw.pipeline.names == ["route"]
    return gw


def pipeline(gw: Gateway) -> Pipeline:
    assert gw.pipeline is not None
    return gw.pipeline


def request(gw: Gateway, ex: Example, model: str = STRONG, **extra: Any) -> Context:
    body = {"model": model, "messages": [{"role": "user", "content": ex.text}], **extra}
    return Context(protocol="openai", body=body, config=gw.config, requested_model=model)


async def test_learned_router_picks_and_records_the_saving(files: dict[str, Path]) -> None:
    gw = await make_gateway(
        config_text(
            files, f"  router: {files['router']}\n  default: {STRONG}\n  knob: 0.5\n  policy: threshold"
        )
    )
    pipe = pipeline(gw)
    examples = load_labeled(files["test"])[:12]
    picked = set()
    for ex in examples:
        ctx = request(gw, ex)
        reply = await pipe(ctx)
        assert reply.ok
        info = ctx.route_decision.to_dict()
        assert info["via"] == "router" and set(info["p"]) == {STRONG, CHEAP, TINY}
        chosen = ctx.target_model
        picked.add(chosen)
        rec = ex.candidates[chosen]
        assert reply.cost == rec.cost
        assert reply.body["choices"][0]["message"]["content"] == rec.response  # type: ignore[index]
        if chosen != STRONG:  # the counterfactual is GPT-4's recorded cost for this prompt
            assert ctx.savings["route"] == ex.candidates[STRONG].cost - rec.cost
        else:
            assert "route" not in ctx.savings
    assert picked - {STRONG}, "a 0.5 threshold sends some MBPP prompts to a cheaper model"


async def test_artifact_for_models_the_config_lacks(files: dict[str, Path]) -> None:
    text = f"""
models:
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
route: {{router: "{files["router"]}", default: {STRONG}}}
"""
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    with pytest.raises(ConfigError) as err:
        RouteStage.build(gw)
    assert f"trained for models this config lacks: {CHEAP}, {TINY}" in str(err.value)


async def test_a_down_candidate_falls_back_to_the_default(files: dict[str, Path]) -> None:
    route = f"  default: {STRONG}\n  rules:\n    - {{name: all-tiny, model: {TINY}}}"
    gw = await make_gateway(config_text(files, route, tiny_dataset="few"))
    pipe = pipeline(gw)
    examples = load_labeled(files["test"])
    # Not ready: never called.
    gw.providers[TINY]._index = None  # type: ignore[attr-defined]
    ctx = request(gw, examples[0])
    reply = await pipe(ctx)
    assert reply.ok and ctx.target_model == STRONG
    assert ctx.route_decision.to_dict()["fallback"] == {"from": TINY, "reason": "provider not ready"}
    assert any("provider not ready" in n for n in ctx.notes)
    # Ready but failing: the tiny model has no recording of prompt 20 and answers 404.
    await gw.providers[TINY].start()
    ctx = request(gw, examples[20])
    reply = await pipe(ctx)
    assert reply.ok and ctx.target_model == STRONG and reply.cost == examples[20].candidates[STRONG].cost
    assert ctx.route_decision.to_dict()["fallback"]["reason"].startswith("error 404")
    # A prompt it has: served by it.
    ctx = request(gw, examples[3])
    assert (await pipe(ctx)).ok and ctx.target_model == TINY and "fallback" not in ctx.route_decision.to_dict()
    # Its circuit breaker open (after repeated upstream failures): not even tried.
    breaker = gw.dispatcher.breakers[TINY]
    for _ in range(breaker.threshold):
        breaker.failure()
    ctx = request(gw, examples[3])
    assert (await pipe(ctx)).ok and ctx.target_model == STRONG
    assert ctx.route_decision.to_dict()["fallback"]["reason"].startswith("circuit open")


async def test_aliases(files: dict[str, Path]) -> None:
    route = f"  default: {STRONG}\n  apply_to: aliases\n  tiers: {{cheap: {CHEAP}}}"
    gw = await make_gateway(config_text(files, route))
    pipe = pipeline(gw)
    ex = load_labeled(files["test"])[1]
    ctx = request(gw, ex, model="tier:cheap")
    reply = await pipe(ctx)
    assert reply.ok and ctx.target_model == CHEAP and ctx.route_decision.to_dict()["via"] == "alias"
    # An alias has no price of its own: the saving is counted against the route's default.
    assert ctx.savings["route"] == ex.candidates[STRONG].cost - ex.candidates[CHEAP].cost
    ctx = request(gw, ex, model="auto")
    assert (await pipe(ctx)).ok and ctx.target_model == STRONG
    ctx = request(gw, ex, model=CHEAP)  # explicit model, apply_to: aliases -> untouched
    assert (await pipe(ctx)).ok and ctx.route_decision is None
    ctx = request(gw, ex, model="tier:huge")
    with pytest.raises(BadRequest, match="tier:cheap"):  # the server answers it as a 400 in the client's shape
        await pipe(ctx)


def test_bad_route_config_names_the_line(files: dict[str, Path]) -> None:
    gw = Gateway(parse_config(config_text(files, "  default: gpt-9\n"), source="thrifty.yaml"))
    with pytest.raises(ConfigError, match="not configured models: gpt-9"):
        RouteStage.build(gw)
    with pytest.raises(ConfigError, match=r"thrifty.yaml:\d+: route.knob"):  # refused when the file is read
        parse_config(config_text(files, "  knob: high\n"), source="thrifty.yaml")
    assert RouteStage.build(Gateway(parse_config("models: []\n"))) is None


async def test_streamed_reply_records_the_saving_when_it_ends(files: dict[str, Path]) -> None:
    route = f"  default: {STRONG}\n  rules:\n    - {{name: all-cheap, model: {CHEAP}}}"
    gw = await make_gateway(config_text(files, route))
    ex = load_labeled(files["test"])[2]
    ctx = request(gw, ex, stream=True)
    reply = await pipeline(gw)(ctx)
    assert reply.stream is not None and "route" not in ctx.savings  # not known before the end
    text = ""
    async for ev in reply.stream:
        if isinstance(ev.data, dict) and ev.data.get("choices"):
            text += ev.data["choices"][0]["delta"].get("content") or ""
    assert text == ex.candidates[CHEAP].response
    assert ctx.savings["route"] == ex.candidates[STRONG].cost - ex.candidates[CHEAP].cost


async def test_quality_target_picks_the_calibrated_knob(files: dict[str, Path]) -> None:
    from thrifty.routing.learned import load_artifact

    art = load_artifact(files["router"])
    expected = art.knob_for("threshold", 0.9)
    assert expected is not None
    gw = Gateway(
        parse_config(config_text(files, f"  router: {files['router']}\n  policy: threshold\n  target: 0.9"))
    )
    stage = RouteStage.build(gw)
    assert stage is not None and stage.plan_for("default").knob == expected
    gw = Gateway(
        parse_config(config_text(files, f"  router: {files['router']}\n  policy: threshold\n  target: 1.4"))
    )
    with pytest.raises(ConfigError, match="cannot reach target 1.4"):
        RouteStage.build(gw)
