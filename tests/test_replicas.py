"""Two `thrifty serve` replicas over one PostgreSQL (+ pgvector) and one Redis behave as one
gateway: what one cached the other serves, identical requests across both make one upstream
call, and every request is in the one ledger."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
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
ADMIN = "admin-secret-for-replica-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
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

    @classmethod
    async def started(cls, config: Path) -> Replica:
        """A ready replica on a free port (another one if something took the port meanwhile)."""
        for attempt in range(3):
            replica = cls(config, free_port())
            try:
                await replica.ready()
                return replica
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

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
server:
  keys: [{{name: admin, sha256: "{hashlib.sha256(ADMIN.encode()).hexdigest()}", admin: true}}]
# durability_ms 0: a row is in the journal before its answer leaves, so kill -9 loses none
ledger: {{flush_interval: 0.05, durability_ms: 0}}
spend: {{redis_prefix: "{prefix}spend:"}}
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
    reps: list[Replica] = []
    try:
        reps += await asyncio.gather(Replica.started(config), Replica.started(config))
        yield reps, upstream, database
    finally:
        for r in reps:
            r.stop()
        await upstream.stop()


def chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-test", "temperature": 0, "messages": [{"role": "user", "content": text}]}


async def test_replicas_share_caches_dedup_and_the_ledger(replicas: tuple[list[Replica], MockUpstream, str]) -> None:
    (a, b), upstream, database = replicas
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
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


async def test_a_budget_is_shared_by_both_replicas(replicas: tuple[list[Replica], MockUpstream, str]) -> None:
    (a, b), upstream, database = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        made = await client.post(f"{a.url}/v1/thrifty/keys", headers=AUTH,
                                 json={"name": "shared", "budgets": [{"usd": "0.0001", "window": "day"}]})
        assert made.status_code == 201, made.text
        key = {"Authorization": f"Bearer {made.json()['key']}"}
        answered: list[str] = []
        refused_by: set[str] = set()
        for i in range(200):  # each request costs about $0.00001: the budget holds about ten
            replica = (a, b)[i % 2]
            r = await client.post(f"{replica.url}/v1/chat/completions", headers=key,
                                  json={**chat(f"question {i} {uuid.uuid4().hex}"), "max_tokens": 20})
            if r.status_code == 200:
                answered.append(replica.url)
                continue
            assert r.status_code == 429, r.text
            refused_by.add(replica.url)
            if refused_by == {a.url, b.url}:
                break
        assert refused_by == {a.url, b.url}, "both replicas refuse once the shared budget is spent"
        assert {a.url, b.url} <= set(answered) and len(answered) < 60
        for replica in (a, b):  # each replica counts its own refusals for the autoscaler
            metrics = (await client.get(f"{replica.url}/metrics", headers=AUTH)).text
            assert re.search(r'^thrifty_admission_refusals_total\{reason="budget"\} [1-9]', metrics, re.M), metrics
    # settled spend over both replicas stays within the budget plus at most one request's cost
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with psycopg.connect(database) as conn:
            n, spent = conn.execute("SELECT count(*), COALESCE(SUM(cost_pico), 0) FROM requests "
                                    "WHERE key_name = 'shared' AND status = 200").fetchone()  # type: ignore[misc]
        if n >= len(answered):
            break
        await asyncio.sleep(0.2)
    assert n == len(answered)
    one_request = spent / n
    assert spent <= 100_000_000 + one_request  # $0.0001 in picodollars


async def test_a_replica_killed_mid_traffic_loses_no_ledger_row(
        replicas: tuple[list[Replica], MockUpstream, str], tmp_path: Path) -> None:
    """kill -9 one replica under load: a load balancer's retry sends its traffic to the other,
    and every request answered 200 (by either) is in the ledger once the killed replica's
    successor has started (it replays the dead one's journal)."""
    (a, b), upstream, database = replicas
    answered: list[str] = []
    failed_after_kill: list[str] = []
    killed_at: list[float] = []

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = chat(f"unique {i} {uuid.uuid4().hex} [slow 30]")
        order = (a, b) if i % 2 == 0 else (b, a)
        for attempt, replica in enumerate(order):  # what a load balancer does with a dead backend
            try:
                r = await client.post(f"{replica.url}/v1/chat/completions", json=body)
            except httpx.TransportError as exc:
                if attempt == 0:
                    continue
                if killed_at and time.monotonic() > killed_at[0] + 0.5:
                    failed_after_kill.append(repr(exc))
                return
            if r.status_code == 200:
                answered.append(r.headers["X-Thrifty-Request-Id"])
            elif killed_at and time.monotonic() > killed_at[0] + 0.5:
                failed_after_kill.append(f"{r.status_code} {r.text[:200]}")
            return

    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        tasks = []
        for i in range(240):  # 60 requests/s for 4 s
            tasks.append(asyncio.create_task(one(client, i)))
            if i == 90:
                a.kill9()
                killed_at.append(time.monotonic())
            await asyncio.sleep(1 / 60)
        await asyncio.gather(*tasks)
    assert not failed_after_kill, failed_after_kill[:5]
    assert len(answered) >= 200

    successor = await Replica.started(tmp_path / "thrifty.yaml")  # same config: takes over the dead one's journal
    try:
        deadline = time.monotonic() + 20
        while True:
            with psycopg.connect(database) as conn:
                have = {r[0] for r in conn.execute("SELECT request_id FROM requests WHERE request_id = ANY(%s)",
                                                   (answered,)).fetchall()}
            if len(have) == len(answered) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    finally:
        successor.stop()
    assert set(answered) - have == set(), f"{len(set(answered) - have)} answered requests have no ledger row"
