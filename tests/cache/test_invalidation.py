"""Invalidation: `DELETE /v1/thrifty/cache` on a running server and `thrifty cache clear`."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from thrifty.cache.exact import ExactCacheStage
from thrifty.cli import main
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

from .exact_helpers import FakeUpstream, openai_ctx

ADMIN, USER = "sk-admin-test", "sk-user-test"


def config_text(tmp_path: Path) -> str:
    return f"""
store: sqlite:///{tmp_path}/ledger.db
server:
  keys:
    - {{name: ops, sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}, admin: true}}
    - {{name: app, sha256: {hashlib.sha256(USER.encode()).hexdigest()}}}
models:
  - {{name: gpt-test, provider: openai, base_url: "http://127.0.0.1:9/v1"}}
cache: {{enabled: true}}
"""


async def fill(stage: ExactCacheStage) -> dict[str, str]:
    """Store four answers: two routes, two features, two tenants. Returns their keys by name."""
    upstream = FakeUpstream(delay=0)
    specs = {
        "chat-faq": ({"route": "chat", "feature": "faq"}, "default"),
        "chat-search": ({"route": "chat", "feature": "search"}, "default"),
        "batch-faq": ({"route": "batch", "feature": "faq"}, "acme"),
        "batch": ({"route": "batch"}, "acme"),
    }
    keys = {}
    for name, (tags, tenant) in specs.items():
        ctx = openai_ctx(stage.gateway, name, tags=tags, tenant=tenant)
        await stage.handle(ctx, upstream)
        keys[name] = ctx.extra["cache_key"]
    return keys


async def cached(stage: ExactCacheStage, keys: dict[str, str]) -> set[str]:
    store = stage.stores.for_settings(stage.settings("default"))
    return {name for name, key in keys.items() if await store.get(key) is not None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Gateway]]:
    gateway = Gateway(parse_config(config_text(tmp_path)))
    runner = web.AppRunner(create_app(gateway))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", gateway
    await runner.cleanup()


async def test_delete_endpoint_by_key_tag_route_and_all(server: tuple[str, Gateway]) -> None:
    url, gateway = server
    stage = gateway.services.cache
    keys = await fill(stage)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{url}/v1/thrifty/cache", params={"route": "chat"}) as r:
            assert r.status == 401
        async with http.delete(f"{url}/v1/thrifty/cache", params={"all": "true"}, headers={"x-api-key": USER}) as r:
            assert r.status == 403
        async with http.delete(f"{url}/v1/thrifty/cache", headers=admin) as r:
            assert r.status == 400 and "say what to invalidate" in (await r.json())["error"]["message"]
        assert await cached(stage, keys) == set(keys)

        async with http.delete(f"{url}/v1/thrifty/cache", json={"key": keys["batch"]}, headers=admin) as r:
            assert r.status == 200 and (await r.json())["deleted"] == 1
        assert await cached(stage, keys) == {"chat-faq", "chat-search", "batch-faq"}

        async with http.delete(f"{url}/v1/thrifty/cache?tag=feature=faq&route=chat", headers=admin) as r:
            assert (await r.json())["deleted"] == 1
        assert await cached(stage, keys) == {"chat-search", "batch-faq"}

        async with http.delete(f"{url}/v1/thrifty/cache", json={"tenant": "acme"}, headers=admin) as r:
            assert (await r.json())["deleted"] == 1
        async with http.delete(f"{url}/v1/thrifty/cache", json={"all": True}, headers=admin) as r:
            assert (await r.json())["deleted"] == 1
        assert await cached(stage, keys) == set()


async def test_cli_clear_reaches_a_running_servers_memory_tier(tmp_path: Path) -> None:
    path = tmp_path / "thrifty.yaml"
    path.write_text(config_text(tmp_path))
    gateway = Gateway(parse_config(path.read_text()))
    from thrifty.cache.exact import ExactCacheStage

    stage = ExactCacheStage.build(gateway)
    assert stage is not None
    keys = await fill(stage)
    store = stage.stores.for_settings(stage.settings("default"))
    store.check_interval = 0.05  # type: ignore[attr-defined]
    runner = CliRunner()

    def clear(*args: str) -> str:
        result = runner.invoke(main, ["cache", "clear", "--config", str(path), *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "deleted 1 cached answer " in await asyncio.to_thread(clear, "--route", "chat", "--tag", "feature=search")
    await asyncio.sleep(0.1)
    assert await cached(stage, keys) == {"chat-faq", "batch-faq", "batch"}
    assert "deleted 2" in await asyncio.to_thread(clear, "--route", "batch")
    assert "deleted 1" in await asyncio.to_thread(clear, "--all")
    await asyncio.sleep(0.1)
    assert await cached(stage, keys) == set()
    refused = runner.invoke(main, ["cache", "clear", "--config", str(path)])
    assert refused.exit_code == 2 and "say what to invalidate" in refused.output
    await stage.aclose()


async def test_cli_clear_through_a_server(server: tuple[str, Gateway]) -> None:
    url, gateway = server
    stage = gateway.services.cache
    keys = await fill(stage)
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, main, ["cache", "clear", "--server", url, "--api-key", ADMIN, "--tag", "feature=faq"]
    )
    assert result.exit_code == 0 and "deleted 2" in result.output
    assert await cached(stage, keys) == {"chat-search", "batch"}
    denied = await asyncio.to_thread(runner.invoke, main, ["cache", "clear", "--server", url, "--api-key", USER, "--all"])
    assert denied.exit_code == 1 and "403" in denied.output


async def test_invalidation_reaches_the_semantic_index(tmp_path: Path) -> None:
    import numpy as np

    from thrifty.cache.admin import Selection, invalidate
    from thrifty.cache.index import InProcessIndex

    gateway = Gateway(parse_config(f"store: sqlite:///{tmp_path}/l.db\ncache: {{store: sqlite:///{tmp_path}/c.db}}\n"))
    index = InProcessIndex(dim=4)
    gateway.services.semantic_index = index
    for tenant in ("a", "b"):
        index.add(tenant, "ns", "q", np.array([1.0, 0, 0, 0]), {"answer": tenant})
    assert await invalidate(gateway, Selection(tenant="a")) >= 1
    assert not index.has("a", "ns") and index.has("b", "ns")
    await invalidate(gateway, Selection(everything=True))
    assert len(index) == 0
