"""`server.max_in_flight`: past its capacity a replica answers 503 at once instead of queueing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream


async def test_requests_past_max_in_flight_are_shed_at_once(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, "server: {max_in_flight: 2}\n"))
    slow = {"model": "gpt-test", "messages": [{"role": "user", "content": "take your time [slow 1500]"}]}
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        first = [asyncio.create_task(client.post("/v1/chat/completions", json=slow)) for _ in range(2)]
        while gw.gateway.in_flight < 2:  # both are inside, waiting on the upstream
            await asyncio.sleep(0.02)
        shed = await client.post("/v1/chat/completions", json=slow)
        assert shed.status_code == 503 and shed.headers["Retry-After"] == "1"
        assert shed.json()["error"]["code"] == "overloaded" and "max_in_flight" in shed.json()["error"]["message"]
        claude = await client.post("/v1/messages", json={**slow, "model": "claude-test", "max_tokens": 10})
        assert claude.status_code == 503 and claude.json()["type"] == "error"  # Anthropic's shape
        assert (await client.get("/healthz")).status_code == 200  # probes are never shed
        assert all(r.status_code == 200 for r in await asyncio.gather(*first))
        assert (await client.post("/v1/chat/completions", json=slow)).status_code == 200  # room again
        assert "thrifty_shed_total 2" in (await client.get("/metrics")).text
