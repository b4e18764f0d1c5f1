"""The batch lane on PostgreSQL: two workers share a job with SKIP LOCKED claims, each line
settled and billed once. Runs in a schema of its own in the shared test database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch.helpers import lane_on, openai_line, submit
from tests.conftest import mock_config
from thrifty.testing.mock_upstream import MockUpstream

PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except Exception as exc:  # pragma: no cover - no server here
        pytest.skip(f"no PostgreSQL at {PG}: {exc}")
    schema = f"batch_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


async def test_two_workers_on_postgres(upstream: MockUpstream, tmp_path: Path, pg_schema: str) -> None:
    config = mock_config(upstream, tmp_path, "batch: {concurrency: 4, poll_seconds: 0.05, retry_backoff: 0.01}\n")
    config = config.replace(f"store: sqlite:///{tmp_path}/ledger.db", f"store: {pg_schema}")
    items = [openai_line(f"g{i}", f"pg line {i} [slow 10]") for i in range(40)]
    async with lane_on(config) as one, lane_on(config) as two:
        assert one.store.dialect == "postgresql"
        job_id = await submit(one, items)
        assert set(await asyncio.gather(one.run_job(job_id), two.run_job(job_id))) == {"completed"}
        assert not one.store.settle(job_id, 0, state="done")  # settled once, whoever comes later
        lines = one.store.lines(job_id)
        assert one.gateway.ledger is not None
        one.gateway.ledger.flush()
        rows = one.gateway.ledger.store.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests "
                                                "WHERE request_id LIKE ?", (f"req_{job_id}_%",))
    assert all(x["state"] == "done" for x in lines) and len(lines) == 40
    assert tuple(rows[0]) == (40, 40) and upstream.calls["openai"] == 40
