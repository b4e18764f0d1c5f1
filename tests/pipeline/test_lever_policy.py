"""The pipeline, not each lever, decides whether a lever acts: through the real levers.

A lever switched off for a traffic class (by shadow evaluation, through `gateway.overrides`)
stops acting on the next request of that class, and shadow evaluation's `lever_off` mode
produces its reference with the levers that acted, and the caches, really off.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import StartGateway
from tests.evals.conftest import MockOpenAI, write_config
from thrifty.config import load_config

LEVERS = """
cache: {}
compress: {enabled: true, trim: {enabled: true, trim_last_user: true}}
route:
  rules:
    - {when: {keywords: [what]}, model: bad-model}
"""


def ask(i: int, route: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"model": "good-model", "temperature": 0,
            "messages": [{"role": "user", "content": f"What   is   {i}+{i + 1}?"}]}
    return body, ({"X-Thrifty-Tags": f"route={route}"} if route else {})


async def test_a_lever_switched_off_stops_acting_on_its_traffic_class(
    tmp_path: Path, mock_openai: MockOpenAI, start_gateway: StartGateway
) -> None:
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model", "bad-model"], LEVERS)
    gw = await start_gateway(load_config(cfg))
    async with httpx.AsyncClient(base_url=gw.url) as client:
        async def row_of(i: int, route: str | None = None) -> dict[str, Any]:
            body, headers = ask(i, route)
            resp = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert resp.status_code == 200
            rid = resp.headers["X-Thrifty-Request-Id"]
            return next(r for r in gw.rows() if r["request_id"] == rid)

        first = await row_of(1)
        assert first["served_model"] == "bad-model"  # routed
        assert {"route", "compress.trim"} <= set(json.loads(first["savings"]))
        assert (await row_of(1))["answered_by"] == "cache"  # the exact cache answers the repeat

        for lever in ("cache", "compress", "route"):
            gw.gateway.overrides.disable("default", lever)
        off = await row_of(1)
        assert off["answered_by"] is None and off["cache"] is None  # the cache stood aside
        assert off["served_model"] == "good-model"  # routing stood aside
        assert json.loads(off["savings"]) == {}  # compression too
        sent = mock_openai.calls[-1]["messages"][-1]["content"]
        assert sent == "What   is   1+2?"  # the prompt went out untrimmed

        # other traffic classes keep every lever
        other = await row_of(2, route="support")
        assert other["served_model"] == "bad-model" and "compress.trim" in json.loads(other["savings"])


async def test_lever_off_reference_is_made_with_the_acting_levers_and_caches_off(
    tmp_path: Path, mock_openai: MockOpenAI, start_gateway: StartGateway
) -> None:
    shadow = (f"shadow: {{sample: 1.0, grader: {{type: numeric}}, tolerance: 0.2, min_samples: 3, "
              f"db: '{tmp_path / 's.db'}'}}\n")
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model", "bad-model"], LEVERS + shadow)
    gw = await start_gateway(load_config(cfg))
    stage = gw.gateway.services.shadow
    assert stage is not None
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for i in (1, 1, 2, 3):  # the repeat of 1 is a cache hit, judged as well
            body, _ = ask(i)
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            await stage.drain()
        # every rerun reached the upstream on the unrouted model (none was a cache hit)
        reruns = [c for c in mock_openai.calls if c["model"] == "good-model"]
        assert len(reruns) == 4
        snap = stage.monitor.snapshot()
        assert ["default", "route"] in snap["disabled"]
        assert ("default", "route") in gw.gateway.overrides
        body, _ = ask(4)
        fixed = (await client.post("/v1/chat/completions", json=body)).json()
    assert fixed["model"] == "good-model" and "#### 9" in fixed["choices"][0]["message"]["content"]


async def test_the_semantic_cache_switched_off_stops_serving_paraphrases(
    tmp_path: Path, mock_openai: MockOpenAI, start_gateway: StartGateway
) -> None:
    cfg = write_config(tmp_path / "c.yaml", mock_openai.url, ["good-model"], "semantic_cache: {enabled: true}\n")
    gw = await start_gateway(load_config(cfg))
    question, paraphrase = "How do I reset my router password?", "How can I reset the password of my router?"

    def body(text: str) -> dict[str, Any]:
        return {"model": "good-model", "temperature": 0, "messages": [{"role": "user", "content": text}]}

    async with httpx.AsyncClient(base_url=gw.url) as client:
        await client.post("/v1/chat/completions", json=body(question))
        for _ in range(50):  # the answer is indexed in the background, after the reply
            hit = await client.post("/v1/chat/completions", json=body(paraphrase))
            if hit.headers.get("X-Thrifty-Cache") == "semantic-hit":
                break
            await asyncio.sleep(0.1)
        assert hit.headers.get("X-Thrifty-Cache") == "semantic-hit"
        calls = len(mock_openai.calls)
        gw.gateway.overrides.disable("default", "semantic_cache")
        off = await client.post("/v1/chat/completions", json=body(paraphrase))
        assert off.headers.get("X-Thrifty-Cache") is None and len(mock_openai.calls) == calls + 1
