"""Spend admission on the endpoints beside chat: `/v1/completions`, `/v1/embeddings` and
`/v1/responses` check a virtual key's models and reserve against its budget before any
upstream call, and settle to the row's cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.spend.helpers import create_key, start
from thrifty.testing.mock_upstream import MockUpstream

BODIES: dict[str, dict[str, Any]] = {
    "completions": {"model": "gpt-test", "prompt": "count to three", "max_tokens": 10},
    "embeddings": {"model": "gpt-test", "input": ["alpha", "beta"]},
    "responses": {"model": "gpt-test", "input": "count to three", "max_output_tokens": 10},
}
UPSTREAM = {"completions": "completions", "embeddings": "embeddings", "responses": "openai"}


async def post(url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("endpoint", sorted(BODIES))
async def test_a_key_limited_to_other_models_is_refused_before_the_call(
    endpoint: str, upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="dave", models=["claude-test"])
    status, body = await post(f"{gw.url}/v1/{endpoint}", made["key"], BODIES[endpoint])
    assert status == 403 and "gpt-test" in body["error"]["message"]
    assert upstream.calls[UPSTREAM[endpoint]] == 0


@pytest.mark.parametrize("endpoint", sorted(BODIES))
async def test_a_budget_is_reserved_and_settled(
    endpoint: str, upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="tight", budgets=[{"usd": "0.00002", "window": "day"}])
    statuses = []
    for i in range(12):
        body = {**BODIES[endpoint]}
        body["prompt" if endpoint == "completions" else "input"] = f"question number {i} " + "please " * 50
        status, answer = await post(f"{gw.url}/v1/{endpoint}", made["key"], body)
        statuses.append(status)
        if status == 429:
            break
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
    assert statuses[-1] == 429 and statuses.count(200) >= 1
    assert answer["error"]["code"] == "budget_exceeded"
    assert upstream.calls[UPSTREAM[endpoint]] == statuses.count(200)  # the refused one never reached it
