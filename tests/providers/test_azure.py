"""Azure OpenAI conformance: deployment URLs, `api-version`, the `api-key` header, and the
ledger's bill for Azure's (OpenAI's) documented usage shape, checked against a hand-computed
one; chat (streamed and not) and embeddings."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.conftest import StartGateway
from thrifty.testing.mock_upstream import MockUpstream, mock_vector


def azure_config(upstream: MockUpstream, tmp_path: Path, options: str) -> str:
    return f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - name: gpt-azure
    provider: azure
    model: gpt-4o
    base_url: {upstream.base_url}
    api_key_env: TEST_AZURE_KEY
    price: {{input: 2.5, output: 10, cache_read: 1.25}}
    options: {options}
  - name: emb-azure
    provider: azure
    model: text-embedding-3-large
    base_url: {upstream.base_url}
    api_key_env: TEST_AZURE_KEY
    price: {{input: 0.13, output: 0}}
    options: {{deployment: emb-dep}}
"""


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_on_a_deployment_is_billed_from_azure_usage(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    gw = await start_gateway(azure_config(upstream, tmp_path, "{deployment: prod-4o, api_version: '2024-10-21'}"))
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    ask = {"model": "gpt-azure", "messages": [{"role": "user", "content": "hello azure [cached 8] [reason 5]"}]}
    if stream:
        async for _ in await client.chat.completions.create(**ask, stream=True):  # type: ignore[call-overload]
            pass
    else:
        answer = await client.chat.completions.create(**ask)  # type: ignore[call-overload]
        assert answer.choices[0].message.content == "echo: hello azure"
    assert upstream.urls[-1] == "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    assert upstream.headers[-1]["api-key"] == "azure-secret" and "Authorization" not in upstream.headers[-1]
    [row] = gw.rows()
    # The mock's usage: prompt = len(json of contents)//4 + 10, 8 of them cached; 3 words + 5 reasoning out.
    prompt = len('"hello azure [cached 8] [reason 5]"') // 4 + 10
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (
        prompt - 8, 8, 8, 5)
    # $2.50/M uncached input, $1.25/M cached, $10/M output (reasoning included), in picodollars
    assert row["cost_pico"] == (prompt - 8) * 2_500_000 + 8 * 1_250_000 + 8 * 10_000_000


async def test_the_v1_api_and_embeddings(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    gw = await start_gateway(azure_config(upstream, tmp_path, "{api_version: v1}"))
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    await client.chat.completions.create(model="gpt-azure", messages=[{"role": "user", "content": "hi"}])
    assert upstream.urls[-1] == "/openai/v1/chat/completions" and upstream.bodies[-1]["model"] == "gpt-4o"
    out = await client.embeddings.create(model="emb-azure", input=["a", "b"])
    assert [d.embedding for d in out.data] == [mock_vector("a"), mock_vector("b")]
    assert upstream.headers[-1]["api-key"] == "azure-secret"
    rows = gw.rows()
    assert rows[-1]["input_tokens"] == 2 and rows[-1]["cost_pico"] == 2 * 130_000


async def test_a_model_without_a_known_price_says_so_in_its_row(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - {{name: odd, provider: azure, model: no-such-model-anywhere, base_url: {upstream.base_url}, options: {{deployment: d}}}}
""")
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    await client.chat.completions.create(model="odd", messages=[{"role": "user", "content": "hi"}])
    [row] = gw.rows()
    assert row["cost_pico"] == 0 and "no price known for 'no-such-model-anywhere'" in row["extra"]
