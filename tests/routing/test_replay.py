from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.config import Config, ModelConfig
from thrifty.errors import ConfigError
from thrifty.providers.base import UpstreamError
from thrifty.providers.replay import ReplayProvider
from thrifty.routing.datasets import convert_routerbench
from thrifty.routing.labeled import write_labeled
from thrifty.types import Context


@pytest.fixture(scope="module")
def mbpp_test(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    conv = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv")
    path = tmp_path_factory.mktemp("replay") / "mbpp_test.jsonl"
    write_labeled(conv.examples, path)
    return path


def provider(dataset: Path, model: str = "gpt-3.5-turbo-1106") -> ReplayProvider:
    return ReplayProvider(
        ModelConfig(name="cheap", provider="replay", model=model, options={"dataset": str(dataset)})
    )


async def test_answers_with_the_recorded_response_and_cost(mbpp_test: Path) -> None:
    from thrifty.routing.labeled import load_labeled

    ex = load_labeled(mbpp_test)[5]
    p = provider(mbpp_test)
    await p.start()
    assert p.ready()
    body = {"model": "cheap", "messages": [{"role": "user", "content": ex.prompt}]}
    reply = await p.send(body, Context(protocol="openai", body=body, config=Config()))
    rec = ex.candidates["gpt-3.5-turbo-1106"]
    assert reply.body is not None
    assert reply.body["choices"][0]["message"]["content"] == rec.response
    assert reply.cost == rec.cost and isinstance(reply.cost, Decimal)
    assert reply.usage.output_tokens > 0 and reply.usage.estimated
    assert reply.body["usage"]["prompt_tokens"] == reply.usage.input_tokens


async def test_streams_the_same_text(mbpp_test: Path) -> None:
    from thrifty.routing.labeled import load_labeled

    ex = load_labeled(mbpp_test)[0]
    p = provider(mbpp_test, "claude-v2")
    body = {
        "model": "cheap",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": ex.prompt}],
    }
    reply = await p.send(body, Context(protocol="openai", body=body, config=Config()))
    assert reply.stream is not None
    text, events = "", []
    async for ev in reply.stream:
        events.append(ev)
        if isinstance(ev.data, dict) and ev.data["choices"]:
            text += ev.data["choices"][0]["delta"].get("content", "")
    assert text == ex.candidates["claude-v2"].response
    assert events[-1].data == "[DONE]" and isinstance(events[-2].data, dict) and "usage" in events[-2].data
    assert reply.cost == ex.candidates["claude-v2"].cost
    # It reached its end: the ledger records it "ok", not "partial", and the cache may keep it.
    assert reply.stream.complete and reply.stream.error is None


async def test_unknown_prompt_is_a_404(mbpp_test: Path) -> None:
    p = provider(mbpp_test)
    body = {"model": "cheap", "messages": [{"role": "user", "content": "never recorded"}]}
    with pytest.raises(UpstreamError) as err:
        await p.send(body, Context(protocol="openai", body=body, config=Config()))
    assert err.value.status == 404 and "not in" in err.value.message
    assert p.stats()["replay_misses"] == 1


def test_needs_a_dataset_with_that_model(mbpp_test: Path) -> None:
    with pytest.raises(ConfigError, match="options.dataset"):
        ReplayProvider(ModelConfig(name="x", provider="replay"))
    with pytest.raises(ValueError, match="no recorded answers of 'gpt-5'"):
        provider(mbpp_test, "gpt-5")._load()
