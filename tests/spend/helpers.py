"""Helpers of the spend tests: a gateway with an admin key, and keys made through its API."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

ADMIN = "admin-secret-for-tests"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def spend_config(upstream: MockUpstream, tmp_path: Path, spend: str = "", store: str | None = None) -> str:
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    text = mock_config(upstream, tmp_path, f"""
server:
  keys:
    - {{name: admin, sha256: "{digest}", admin: true}}
spend:
  keys_refresh: 0.2
{spend}
""")
    if store is not None:
        text = text.replace(f"store: sqlite:///{tmp_path}/ledger.db", f"store: {store}")
    return text


async def start(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path, spend: str = "") -> RunningGateway:
    return await start_gateway(spend_config(upstream, tmp_path, spend))


async def create_key(gw: RunningGateway, **spec: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/thrifty/keys", json=spec, headers=ADMIN_HEADERS) as r:
        body = await r.json()
        assert r.status == 201, body
        return dict(body)


async def chat(gw: RunningGateway, key: str, text: str = "hello there", **extra: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/chat/completions", json=body,
                                                   headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def clear_of_window_edge(span: float = 60.0, margin: float = 4.0) -> None:
    """Sleep past the next rate window's start when it is less than `margin` seconds away,
    so that a test counting requests in one window never straddles two."""
    import asyncio
    import time

    left = span - time.time() % span
    if left < margin:
        await asyncio.sleep(left + 0.05)
