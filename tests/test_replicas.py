"""Two `thrifty serve` replicas over one PostgreSQL (+ pgvector) and one Redis behave as one
gateway: what one cached the other serves, identical requests across both make one upstream
call, and every request is in the one ledger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import free_port
from thrifty.testing.mock_upstream import MockUpstream

REDIS = "redis://127.0.0.1:6379/0"
Q = "How do I reset my router password?"
PARAPHRASE = "How can I reset the password of my router?"


@pytest.fixture
def database(pgvector_url: str) -> Iterator[str]:
    """A database of its own on the pgvector server, dropped afterwards."""
    name = f"replicas_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pgvector_url.replace("/postgres?", f"/{name}?")
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Replica:
    def __init__(self, config: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config), "--port", str(port),
             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    async def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"replica exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"replica on {self.port} not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
async def replicas(tmp_path: Path, database: str) -> AsyncIterator[tuple[list[Replica], MockUpstream, str]]:
    upstream = await MockUpstream().start()
    prefix = f"thrifty-test-{uuid.uuid4().hex[:8]}:"
    config = tmp_path / "thrifty.yaml"
    config.write_text(f"""
store: "{database}"
redis: {REDIS}
ledger: {{flush_interval: 0.05}}
models:
  - name: gpt-test
    provider: openai
    model: gpt-4o-mini
    base_url: {upstream.base_url}/v1
    price: {{input: 0.15, output: 0.60}}
# a generous Redis budget: this test is about sharing, not about a loaded machine's Redis latency
cache: {{prefix: "{prefix}cache:", redis_budget_ms: 3000}}
dedup: {{prefix: "{prefix}dedup:", redis_budget_ms: 3000, ghost_grace: 2}}
semantic_cache: {{enabled: true}}
""")
    reps = [Replica(config, free_port()), Replica(config, free_port())]
    try:
        await asyncio.gather(*(r.ready() for r in reps))
        yield reps, upstream, database
    finally:
        for r in reps:
            r.stop()
        await upstream.stop()


def chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-test", "temperature": 0, "messages": [{"role": "user", "content": text}]}


async def test_replicas_share_caches_dedup_and_the_ledger(replicas: tuple[list[Replica], MockUpstream, str]) -> None:
    (a, b), upstream, database = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        # exact cache: stored through A, served by B
        first = await client.post(f"{a.url}/v1/chat/completions", json=chat("What is the capital of France?"))
        again = await client.post(f"{b.url}/v1/chat/completions", json=chat("What is the capital of France?"))
        assert first.status_code == again.status_code == 200
        assert again.headers["X-Thrifty-Cache"] == "hit" and again.json() == first.json()
        assert upstream.calls["openai"] == 1

        # semantic cache (pgvector): a paraphrase through B of what A answered
        await client.post(f"{a.url}/v1/chat/completions", json=chat(Q))
        for _ in range(100):  # the index is written after the reply, in the background
            with psycopg.connect(database) as conn:
                if conn.execute("SELECT count(*) FROM semantic_entries WHERE question = %s", (Q,)).fetchone()[0]:  # type: ignore[index]
                    break
            await asyncio.sleep(0.1)
        paraphrase = await client.post(f"{b.url}/v1/chat/completions", json=chat(PARAPHRASE))
        if paraphrase.headers.get("X-Thrifty-Cache") != "semantic-hit":
            await asyncio.sleep(1.0)
            with psycopg.connect(database) as conn:
                why = conn.execute("SELECT extra FROM requests WHERE request_id = %s",
                                   (paraphrase.headers["X-Thrifty-Request-Id"],)).fetchall()
                entries = conn.execute("SELECT tenant, namespace, question FROM semantic_entries").fetchall()
            pytest.fail(f"no semantic hit: {paraphrase.headers.get('X-Thrifty-Cache')}; row {why}; entries {entries}")

        # in-flight dedup over Redis: 50 identical requests spread over both, one upstream call
        before = upstream.calls["openai"]
        burst = chat(f"Describe the sea in {uuid.uuid4().hex} words [slow 800]")
        replies = await asyncio.gather(*(client.post(f"{(a, b)[i % 2].url}/v1/chat/completions", json=burst)
                                         for i in range(50)))
        assert all(r.status_code == 200 for r in replies)
        assert len({r.json()["choices"][0]["message"]["content"] for r in replies}) == 1
        assert upstream.calls["openai"] - before == 1

    # one ledger for both: every request has its row, each billed once
    sent = 2 + 1 + 1 + 50  # the exact pair, Q, the paraphrase, the burst
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with psycopg.connect(database) as conn:
            rows = conn.execute("SELECT answered_by, cost_pico FROM requests").fetchall()
        if len(rows) >= sent:
            break
        await asyncio.sleep(0.2)
    billed = [r for r in rows if r[1] > 0]
    assert len(rows) >= sent
    assert len(billed) == upstream.calls["openai"]  # one bill per upstream call, whoever answered
