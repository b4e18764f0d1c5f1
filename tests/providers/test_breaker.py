"""The circuit breaker and the fallback list, through the real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import StartGateway, mock_config
from thrifty.providers.breaker import CircuitBreaker
from thrifty.testing.mock_upstream import MockUpstream


def test_breaker_opens_after_repeated_failures_and_half_opens_after_cooldown() -> None:
    b = CircuitBreaker(failures=2, cooldown=0.0)
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "half-open"  # cooldown 0: a trial is allowed at once
    assert b.allow() and not b.allow()  # one trial only
    b.success()
    assert b.state == "closed" and b.allow()
    slow = CircuitBreaker(failures=1, cooldown=60)
    slow.failure()
    assert slow.state == "open" and not slow.allow() and slow.retry_in() > 59


async def test_fallback_serves_when_the_primary_fails(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    cfg = mock_config(upstream, tmp_path).replace(
        "    retry_backoff: 0.01\n  - name: claude-test", "    retry_backoff: 0.01\n    max_retries: 0\n    fallbacks: [claude-test]\n    base_url_placeholder: x\n  - name: claude-test", 1
    ).replace("    base_url_placeholder: x\n", "")
    # Point the primary at a port where nothing listens.
    cfg = cfg.replace(f"base_url: {upstream.base_url}/v1", "base_url: http://127.0.0.1:9/v1", 1)
    thrifty = await start_gateway(cfg)
    async with httpx.AsyncClient() as http:
        r = await http.post(thrifty.url + "/v1/chat/completions",
                            json={"model": "gpt-test", "messages": [{"role": "user", "content": "fall back"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: fall back"
    assert r.headers["X-Thrifty-Model"] == "claude-test"
    [row] = thrifty.rows()
    assert row["served_model"] == "claude-test" and json.loads(row["extra"])["fallback_from"] == "gpt-test"
