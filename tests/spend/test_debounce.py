"""Debounce: a key's repeated request inside its window is answered once, and the ledger says so."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import aiohttp

from tests.conftest import StartGateway
from tests.spend.helpers import chat, create_key, start
from thrifty.testing.mock_upstream import MockUpstream


async def test_repeats_inside_the_window_are_answered_from_the_first(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    chatty = await create_key(gw, name="chatty", debounce=5)
    calm = await create_key(gw, name="calm")
    first = await chat(gw, chatty["key"], "what is the capital of France")
    again = await chat(gw, chatty["key"], "what is the capital of France")
    assert first[0] == again[0] == 200 and again[1]["choices"] == first[1]["choices"]
    assert again[2].get("X-Thrifty-Debounced") == "1" and "X-Thrifty-Debounced" not in first[2]
    assert upstream.calls["openai"] == 1
    await chat(gw, calm["key"], "what is the capital of France")  # another key: not debounced
    assert upstream.calls["openai"] == 2
    together = await asyncio.gather(*(chat(gw, chatty["key"], "[slow 300] at once") for _ in range(3)))
    assert all(t[0] == 200 for t in together) and upstream.calls["openai"] == 3
    rows = [r for r in gw.rows() if r["key_name"] == "chatty"]
    debounced = [r for r in rows if r["answered_by"] == "debounce"]
    assert len(debounced) == 3 and all(r["cost_usd"] == 0 for r in debounced)
    paid = [r for r in rows if r["answered_by"] is None]
    saved = json.loads(debounced[0]["savings"])["debounce"]
    assert Decimal(saved) == Decimal(str(paid[0]["cost_usd"])) or abs(Decimal(saved) - Decimal(str(paid[0]["cost_usd"]))) < Decimal("1e-12")


async def test_a_stream_is_replayed_and_a_failure_debounces_nothing(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="streamer", debounce=5)
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "one two three"}]}
    texts = []
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.post(f"{gw.url}/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {made['key']}"}) as r:
                texts.append(await r.text())
    assert texts[0] == texts[1] and "three" in texts[0] and upstream.calls["openai"] == 1
    for _ in range(2):
        assert (await chat(gw, made["key"], "broken [500 always]"))[0] >= 500
    assert upstream.calls["openai"] == 1 + 2 * 3  # each failed request tried the upstream (with its retries)
