"""`/v1/embeddings` through the official SDK: pass-through, the per-input cache (a property
test over mixed batches), pricing, limits, the local MiniLM, and an upstream of the wrong shape."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing.mock_upstream import MockUpstream, mock_vector

EMBED = """  - name: emb-test
    provider: openai
    model: text-embedding-3-small
    base_url: {base}/v1
    price: {{input: 0.02, output: 0}}
    retry_backoff: 0.01
  - {{name: minilm, provider: local, model: all-minilm-l6-v2}}
"""


def embed_config(upstream: MockUpstream, tmp: Path, extra: str = "") -> str:
    return mock_config(upstream, tmp, extra).replace("models:\n", "models:\n" + EMBED.format(base=upstream.base_url), 1)


def client(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
async def gw(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(embed_config(upstream, tmp_path))


async def test_a_mixed_batch_sends_only_new_inputs_and_keeps_positions(gw: RunningGateway, upstream: MockUpstream) -> None:
    c = client(gw)
    first = await c.embeddings.create(model="emb-test", input=["alpha", "beta"])
    assert [d.embedding for d in first.data] == [mock_vector("alpha"), mock_vector("beta")]
    second = await c.embeddings.create(model="emb-test", input=["gamma", "alpha", "delta", "beta", "gamma"])
    assert upstream.bodies[-1]["input"] == ["gamma", "delta"]  # only the unseen ones, once each
    assert [d.embedding for d in second.data] == [mock_vector(x) for x in ["gamma", "alpha", "delta", "beta", "gamma"]]
    assert [d.index for d in second.data] == [0, 1, 2, 3, 4]
    hit = await c.embeddings.with_raw_response.create(model="emb-test", input="alpha")
    assert hit.headers["x-thrifty-cache"] == "hit" and upstream.calls["embeddings"] == 2
    rows = gw.rows()
    assert [r["cache"] for r in rows] == ["miss", "partial", "hit"]
    # mock tokens: max(len(json)//4, 1) -> "alpha" 1, "beta" 1, "gamma" 1, "delta" 1
    assert [r["input_tokens"] for r in rows] == [2, 2, 0]
    assert [r["cost_pico"] for r in rows] == [2 * 20_000, 2 * 20_000, 0]  # $0.02/M = 20,000 pico per token
    saved = [Decimal(json.loads(r["savings"]).get("embedding_cache", 0)) for r in rows]
    assert saved == [0, Decimal("0.00000006"), Decimal("0.00000002")]  # alpha + beta + the repeated gamma; then alpha
    assert rows[2]["answered_by"] == "cache" and rows[1]["counterfactual_pico"] == 5 * 20_000


async def test_base64_dimensions_and_token_inputs(gw: RunningGateway, upstream: MockUpstream) -> None:
    c = client(gw)
    out = await c.embeddings.create(model="emb-test", input=[[1, 2, 3]], dimensions=4, encoding_format="base64")
    assert upstream.bodies[-1] == {"model": "text-embedding-3-small", "input": [[1, 2, 3]], "encoding_format": "float",
                                   "dimensions": 4}
    raw = out.data[0].embedding
    vector = np.frombuffer(base64.b64decode(raw), dtype="<f4") if isinstance(raw, str) else np.asarray(raw)
    assert np.allclose(vector, mock_vector([1, 2, 3], 4))
    again = await c.embeddings.create(model="emb-test", input=[[1, 2, 3]], dimensions=8)
    assert upstream.calls["embeddings"] == 2 and len(again.data[0].embedding) == 8  # other dimensions, other key


async def test_limits_unknown_models_and_a_wrong_shape(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(embed_config(upstream, tmp_path, "embeddings: {max_inputs: 3}\n"))
    c = client(gw)
    with pytest.raises(openai.BadRequestError, match="limit is 3 inputs per request"):
        await c.embeddings.create(model="emb-test", input=["a", "b", "c", "d"])
    with pytest.raises(openai.NotFoundError):
        await c.embeddings.create(model="nope", input="a")
    with pytest.raises(openai.BadRequestError, match="speaks anthropic"):
        await c.embeddings.create(model="claude-test", input="a")
    with pytest.raises(openai.APIStatusError, match="does not document: 1 vectors for 2 inputs") as err:
        await c.embeddings.create(model="emb-test", input=["fine", "x [badshape]"])
    assert err.value.status_code == 502
    rows = gw.rows()
    assert [r["status"] for r in rows] == [400, 502]  # refused by thrifty; the upstream's bad answer
    assert all(r["cost_pico"] == 0 for r in rows)  # never a half-priced row
    assert upstream.calls["embeddings"] == 1


async def test_local_minilm_serves_free_embeddings(gw: RunningGateway) -> None:
    from thrifty.embed import shared_embedder

    out = await client(gw).embeddings.create(model="minilm", input=["a cat sat", "a cat sat down"])
    vectors = np.asarray([d.embedding for d in out.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(vectors, shared_embedder().embed(["a cat sat", "a cat sat down"]), atol=1e-6)
    [row] = gw.rows()
    assert row["cost_pico"] == 0 and row["input_tokens"] > 0 and row["provider"] == "local"


words = st.sampled_from([f"w{i}" for i in range(12)])
batches = st.lists(st.lists(words, min_size=1, max_size=8), min_size=1, max_size=6)


@settings(max_examples=20, deadline=None)
@given(batches=batches)
def test_property_every_vector_in_its_place_and_only_unseen_inputs_go_upstream(batches: list[list[str]]) -> None:
    """Any sequence of batches: the upstream is sent each distinct input exactly once over
    the whole run, and every answer equals a direct call's vectors, input by input."""

    async def scenario() -> None:
        upstream = await MockUpstream().start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                gateway = Gateway(parse_config(embed_config(upstream, Path(tmp))))
                from aiohttp import web

                runner = web.AppRunner(create_app(gateway), access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = runner.addresses[0][1]
                try:
                    c = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
                    for batch in batches:
                        out = await c.embeddings.create(model="emb-test", input=batch)
                        assert [d.embedding for d in out.data] == [mock_vector(x) for x in batch]
                    sent = [x for body in upstream.bodies for x in body["input"]]
                    assert sorted(sent) == sorted({x for batch in batches for x in batch})
                finally:
                    await runner.cleanup()
        finally:
            await upstream.stop()

    asyncio.run(scenario())


async def test_the_cache_is_per_tenant(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    import hashlib

    sha = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("key-a", "key-b")}
    extra = f"""server:
  keys:
    - {{name: a, sha256: {sha['key-a']}, tenant: acme}}
    - {{name: b, sha256: {sha['key-b']}, tenant: globex}}
"""
    gw = await start_gateway(embed_config(upstream, tmp_path, extra))
    for key in ("key-a", "key-b"):
        c = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        raw = await c.embeddings.with_raw_response.create(model="emb-test", input="secret plan")
        assert raw.headers["x-thrifty-cache"] == "miss"  # another tenant's entry is not a hit
    assert upstream.calls["embeddings"] == 2
