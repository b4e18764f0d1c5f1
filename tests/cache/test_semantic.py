"""The semantic cache stage: serves a paraphrase only when the verifier agrees, and only safely."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.cache.index import InProcessIndex
from thrifty.cache.semantic import SemanticCache, SemanticCacheSettings, extract_question
from thrifty.cache.verifier import default_verifier
from thrifty.embed import shared_embedder
from thrifty.pipeline.pipeline import Pipeline
from thrifty.testing.mock_upstream import MockUpstream
from thrifty.types import Usage

from .exact_helpers import COST, FakeUpstream, answer_for, anthropic_ctx, gateway, openai_ctx, read_reply

ON = "semantic_cache: {enabled: true}\n"
Q = "How do I reset my router password?"
PARAPHRASE = "How can I reset the password of my router?"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stage(yaml: str = ON, clock: Clock | None = None) -> SemanticCache:
    gw = gateway(f"store: \"sqlite:///:memory:\"\n{yaml}")
    if clock is not None:
        gw.services.semantic_index = InProcessIndex(clock=clock)
    built = SemanticCache.build(gw)
    assert built is not None
    return built


async def settle(cache: SemanticCache) -> None:
    """Let the background store of a whole reply finish."""
    while cache._tasks:
        await asyncio.gather(*cache._tasks)


async def test_a_paraphrase_is_served_from_the_cache() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    ctx = openai_ctx(cache.gateway, Q)
    original = await cache.handle(ctx, upstream)
    await settle(cache)
    assert ctx.extra["semantic_cache"]["outcome"] == "miss"

    again = openai_ctx(cache.gateway, PARAPHRASE)
    hit = await cache.handle(again, upstream)
    assert upstream.calls == 1
    assert hit.body == original.body and hit.body is not None
    assert hit.body["choices"][0]["message"]["content"] == answer_for("default", Q)
    assert hit.usage == Usage() and hit.cost == 0 and hit.provider == "semantic_cache"
    assert again.cache_outcome == "semantic-hit" and again.savings == {"semantic_cache": COST}
    assert again.tokens_saved == {"semantic_cache": 17}
    assert again.extra["semantic_cache"]["outcome"] == "hit" and again.extra["semantic_cache"]["matched"] == Q


async def test_a_hit_saves_again_what_other_levers_saved_on_the_original() -> None:
    """A router sent the original to a cheaper model: the paraphrase's counterfactual is the
    original's, so the route's saving is recorded again beside the semantic cache's."""
    cache, upstream = stage(), FakeUpstream(delay=0)

    async def routed(ctx: Any) -> Any:
        ctx.save("route", Decimal("0.5"))
        return await upstream(ctx)

    await cache.handle(openai_ctx(cache.gateway, Q), routed)
    await settle(cache)
    again = openai_ctx(cache.gateway, PARAPHRASE)
    await cache.handle(again, routed)
    assert upstream.calls == 1 and again.savings == {"semantic_cache": COST, "route": Decimal("0.5")}


async def test_an_empty_namespace_costs_no_embedding_before_the_reply() -> None:
    gw = gateway('store: "sqlite:///:memory:"\n' + ON)
    embedded: list[str] = []

    def embed(text: str) -> Any:
        embedded.append(text)
        return shared_embedder().embed_one(text)

    cache, upstream = SemanticCache(gw, InProcessIndex(), default_verifier(), embed), FakeUpstream(delay=0)
    at_upstream: list[int] = []

    async def next_(ctx: Any) -> Any:
        at_upstream.append(len(embedded))
        return await upstream(ctx)

    await cache.handle(openai_ctx(gw, Q), next_)
    await settle(cache)
    assert at_upstream == [0] and embedded == [Q]  # embedded once, after the reply, to store it
    await cache.handle(openai_ctx(gw, PARAPHRASE), next_)
    assert embedded == [Q, PARAPHRASE] and upstream.calls == 1


async def test_a_similar_question_the_verifier_refuses_goes_upstream() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway, "How do I lose 5 kg in a month?"), upstream)
    await settle(cache)
    trap = openai_ctx(cache.gateway, "How do I lose 50 kg in a month?")
    reply = await cache.handle(trap, upstream)
    assert upstream.calls == 2 and trap.extra["semantic_cache"]["outcome"] == "miss"
    assert reply.body is not None and "50 kg" in reply.body["choices"][0]["message"]["content"]
    assert trap.savings == {}


async def test_questions_behind_the_same_few_shot_block_are_told_apart() -> None:
    """Compared whole, two questions behind the same solved examples look alike; the verifier
    judges the part where they differ, so a different question goes upstream and a
    paraphrase behind the same block is still served."""
    shots = "".join(
        f"Question: Who wrote {book}?\nAnswer: {author}.\n\n"
        for book, author in (("Hamlet", "Shakespeare"), ("Emma", "Austen"), ("Ulysses", "Joyce"))
    )
    cache, upstream = stage(), FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway, shots + "Question: What is the capital of Australia?\nAnswer:"), upstream)
    await settle(cache)
    other = openai_ctx(cache.gateway, shots + "Question: What is the largest city of Australia?\nAnswer:")
    await cache.handle(other, upstream)
    await settle(cache)
    assert upstream.calls == 2 and other.extra["semantic_cache"]["outcome"] == "miss"
    await cache.handle(openai_ctx(cache.gateway, shots + f"Question: {Q}\nAnswer:"), upstream)
    await settle(cache)
    same = openai_ctx(cache.gateway, shots + f"Question: {PARAPHRASE}\nAnswer:")
    await cache.handle(same, upstream)
    assert upstream.calls == 3 and same.extra["semantic_cache"]["outcome"] == "hit"


async def test_hits_only_when_the_verifier_accepts_what_the_index_found() -> None:
    """With the verifier's bar raised out of reach, the same candidate is never served."""
    strict = stage("semantic_cache: {enabled: true, threshold: 1.0}\n")
    upstream = FakeUpstream(delay=0)
    await strict.handle(openai_ctx(strict.gateway, Q), upstream)
    await settle(strict)
    vec = shared_embedder().embed_one(PARAPHRASE)
    assert strict.index.search("default", _namespace(PARAPHRASE), vec, min_score=0.7)  # a candidate exists
    await strict.handle(openai_ctx(strict.gateway, PARAPHRASE), upstream)
    assert upstream.calls == 2


async def test_a_tenant_never_gets_another_tenants_answer() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway, Q, tenant="b"), upstream)
    await settle(cache)
    a = openai_ctx(cache.gateway, Q, tenant="a")
    reply = await cache.handle(a, upstream)
    assert upstream.calls == 2 and a.cache_outcome != "semantic-hit"
    assert reply.body is not None and reply.body["choices"][0]["message"]["content"] == answer_for("a", Q)


async def test_entries_expire_after_the_route_ttl() -> None:
    clock = Clock()
    cache, upstream = stage("semantic_cache: {enabled: true, ttl: 60}\n", clock), FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway, Q), upstream)
    await settle(cache)
    clock.now += 59
    await cache.handle(openai_ctx(cache.gateway, PARAPHRASE), upstream)
    assert upstream.calls == 1
    clock.now += 2
    await cache.handle(openai_ctx(cache.gateway, PARAPHRASE), upstream)
    assert upstream.calls == 2


async def test_errors_and_cut_streams_are_not_stored() -> None:
    cache = stage()
    await cache.handle(openai_ctx(cache.gateway, Q), FakeUpstream(delay=0, fail_status=503))
    await settle(cache)
    cut = await cache.handle(openai_ctx(cache.gateway, Q, stream=True), FakeUpstream(delay=0, cut_after=4))
    await read_reply(cut)
    assert len(cache.index) == 0
    upstream = FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway, PARAPHRASE), upstream)
    assert upstream.calls == 1


async def test_a_complete_stream_is_stored_and_replayed_as_a_stream() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    live, _ = await read_reply(await cache.handle(openai_ctx(cache.gateway, Q, stream=True), upstream))
    assert len(cache.index) == 1
    ctx = openai_ctx(cache.gateway, PARAPHRASE, stream=True)
    reply = await cache.handle(ctx, upstream)
    text, events = await read_reply(reply)
    assert upstream.calls == 1 and ctx.cache_outcome == "semantic-hit"
    assert text == live == answer_for("default", Q)
    assert reply.stream is not None and reply.stream.complete and events[-1].data == "[DONE]"
    # and served whole to a client that does not stream
    whole = await cache.handle(openai_ctx(cache.gateway, PARAPHRASE), upstream)
    assert upstream.calls == 1 and whole.body is not None
    assert whole.body["choices"][0]["message"]["content"] == live


async def test_anthropic_requests_are_cached_in_their_own_protocol() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    await cache.handle(anthropic_ctx(cache.gateway, Q), upstream)
    await settle(cache)
    ctx = anthropic_ctx(cache.gateway, PARAPHRASE, stream=True)
    text, _ = await read_reply(await cache.handle(ctx, upstream))
    assert upstream.calls == 1 and text == answer_for("default", Q)
    other = openai_ctx(cache.gateway, PARAPHRASE)  # same question, other protocol: other namespace
    await cache.handle(other, upstream)
    assert upstream.calls == 2


async def test_sampling_and_tools_bypass_unless_the_route_opts_in() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    warm = openai_ctx(cache.gateway, Q, temperature=0.7)
    await cache.handle(warm, upstream)
    assert warm.extra["semantic_cache"] == {"outcome": "bypass", "reason": "sampling"}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    tooled = openai_ctx(cache.gateway, Q, tools=tools)
    await cache.handle(tooled, upstream)
    assert tooled.extra["semantic_cache"]["reason"] == "tools"
    await settle(cache)
    assert len(cache.index) == 0

    loose = stage("semantic_cache: {enabled: true, allow_sampling: true}\n")
    await loose.handle(openai_ctx(loose.gateway, Q, temperature=0.7), upstream)
    await settle(loose)
    await loose.handle(openai_ctx(loose.gateway, PARAPHRASE, temperature=0.7), upstream)
    assert upstream.calls == 3


async def test_disabled_routes_pass_through_and_no_route_means_no_stage() -> None:
    assert SemanticCache.build(gateway("store: \"sqlite:///:memory:\"\n")) is None
    assert SemanticCache.build(gateway("store: \"sqlite:///:memory:\"\nsemantic_cache: {enabled: false}\n")) is None
    cache = stage("routes:\n  faq:\n    semantic_cache: {enabled: true}\n")
    upstream = FakeUpstream(delay=0)
    pipeline = Pipeline([cache], upstream, cache.gateway.overrides)  # the pipeline skips a lever that is off
    for _ in range(2):
        ctx = openai_ctx(cache.gateway, Q)  # route "default": off
        await pipeline(ctx)
        await settle(cache)
        assert "semantic_cache" not in ctx.extra
    assert upstream.calls == 2 and len(cache.index) == 0
    for q in (Q, PARAPHRASE):
        await cache.handle(openai_ctx(cache.gateway, q, tags={"route": "faq"}), upstream)
        await settle(cache)
    assert upstream.calls == 3


async def test_cache_control_no_cache_and_no_store() -> None:
    cache, upstream = stage(), FakeUpstream(delay=0)
    await cache.handle(openai_ctx(cache.gateway, Q, headers={"Cache-Control": "no-store"}), upstream)
    await settle(cache)
    assert len(cache.index) == 0
    await cache.handle(openai_ctx(cache.gateway, Q), upstream)
    await settle(cache)
    await cache.handle(openai_ctx(cache.gateway, PARAPHRASE, headers={"cache-control": "no-cache"}), upstream)
    assert upstream.calls == 3


def _namespace(q: str) -> str:
    found = extract_question("openai", {"model": "gpt-test", "messages": [{"role": "user", "content": q}], "temperature": 0}, SemanticCacheSettings())
    assert not isinstance(found, str)
    return found.namespace


# -- what counts as the question, and what must be identical ---------------------------


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "temperature": 0, "messages": list(messages), **extra}


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_the_namespace_is_everything_but_the_question() -> None:
    s = SemanticCacheSettings()
    sys_a = {"role": "system", "content": "Answer briefly."}
    a = extract_question("openai", body(sys_a, user("Why is the sky blue?")), s)
    b = extract_question("openai", body(sys_a, user("Why's the sky blue?"), stream=True, user="x"), s)
    c = extract_question("openai", body({"role": "system", "content": "Answer at length."}, user("Why is the sky blue?")), s)
    d = extract_question("openai", body(sys_a, user("Why is the sky blue?"), max_tokens=5), s)
    assert not isinstance(a, str) and not isinstance(b, str) and not isinstance(c, str) and not isinstance(d, str)
    assert a.text == "Why is the sky blue?" and a.namespace == b.namespace
    assert len({a.namespace, c.namespace, d.namespace}) == 3


def test_multi_turn_needs_the_route_to_name_the_question() -> None:
    turns = body(user("Hi"), {"role": "assistant", "content": "Hello!"}, user("What is 2+2?"))
    assert extract_question("openai", turns, SemanticCacheSettings()) == "multi-turn"
    found = extract_question("openai", turns, SemanticCacheSettings(question="last"))
    assert not isinstance(found, str) and found.text == "What is 2+2?"
    other_history = body(user("Hey"), {"role": "assistant", "content": "Hello!"}, user("What is 2+2?"))
    again = extract_question("openai", other_history, SemanticCacheSettings(question="last"))
    assert not isinstance(again, str) and again.namespace != found.namespace


@pytest.mark.parametrize(
    ("request_body", "reason"),
    [
        (body(user("q"), tools=[{"type": "function"}]), "tools"),
        ({"model": "m", "messages": [user("q")]}, "sampling"),
        (body(user([{"type": "image_url", "image_url": {"url": "x"}}])), "non-text question"),
        (body(user("a"), {"role": "tool", "content": "r", "tool_call_id": "1"}), "tool messages"),
        (body(user("   ")), "empty question"),
        (body(user("q"), n=2), "n > 1"),
        (body({"role": "assistant", "content": "hi"}), "no final user message"),
    ],
)
def test_requests_the_cache_must_not_touch(request_body: dict[str, Any], reason: str) -> None:
    assert extract_question("openai", request_body, SemanticCacheSettings()) == reason


def test_text_parts_count_as_the_question() -> None:
    found = extract_question("anthropic", body(user([{"type": "text", "text": "Who wrote Hamlet?"}])), SemanticCacheSettings())
    assert not isinstance(found, str) and found.text == "Who wrote Hamlet?"


def test_bad_settings_are_reported_with_the_key() -> None:
    from thrifty.config import ConfigError

    with pytest.raises(ConfigError, match="semantic_cache.ttl"):
        SemanticCache.build(gateway("store: \"sqlite:///:memory:\"\nsemantic_cache: {enabled: true, ttl: -1}\n"))


# -- end to end: the OpenAI SDK against thrifty in front of the mock upstream ----------


@pytest.fixture
async def served(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(mock_config(upstream, tmp_path, ON))


async def test_end_to_end_a_paraphrase_is_a_semantic_hit_in_the_ledger(
    served: RunningGateway, upstream: MockUpstream
) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)

    async def ask(q: str) -> tuple[str | None, str | None]:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": q}], temperature=0
        )
        return raw.parse().choices[0].message.content, raw.headers.get("x-thrifty-cache")

    first = await ask(Q)
    await asyncio.sleep(0.05)  # the store happens just after the reply
    second = await ask(PARAPHRASE)
    assert upstream.calls["openai"] == 1
    assert second == (first[0], "semantic-hit")
    rows = served.rows()
    assert len(rows) == 2
    hit_row = [r for r in rows if r["cache"] == "semantic-hit"]
    assert len(hit_row) == 1 and hit_row[0]["cost_pico"] == 0 and hit_row[0]["saved_pico"] > 0
    assert default_verifier().threshold > 0
