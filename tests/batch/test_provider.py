"""The provider-batch target against the mock's batch APIs: billed at the discount, to the
picodollar of what the provider billed, whoever polls; a submitted provider batch is found
again after a crash and never submitted twice; unanswered lines fall back."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests.batch.helpers import lane_on, openai_line, submit
from tests.conftest import mock_config
from thrifty.batch.inputs import Line
from thrifty.batch.provider import BatchAPI
from thrifty.ledger.record import from_pico
from thrifty.testing.mock_upstream import MockUpstream

PB = ("cache: {enabled: true}\ndedup: {enabled: true}\n"
      "batch: {provider_batch_models: [gpt-test, claude-test], provider_batch_min_deadline: 0, poll_seconds: 0.05,"
      " retry_backoff: 0.01, lease_seconds: 2}\n")


@pytest.fixture(autouse=True)
def prices(upstream: MockUpstream) -> None:
    upstream.batch_delay = 0.3
    upstream.batch_prices = {"gpt-4o-mini": {"input": Decimal("0.15"), "output": Decimal("0.60")},
                             "claude-sonnet-4-5": {"input": Decimal(3), "output": Decimal(15)}}


def _job_rows(lane, job_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    lane.gateway.ledger.flush()
    return [r for r in lane.gateway.ledger.store.rows() if r["request_id"].startswith(f"req_{job_id}_")]


async def test_openai_batch_api_billed_as_the_provider_billed(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"p{i}", f"item {i % 16}") for i in range(20)]  # 4 repeats
    async with lane_on(mock_config(upstream, tmp_path, PB)) as lane:
        job_id = await submit(lane, items)
        assert lane.store.get_job(job_id)["target"] == "provider_batch"
        assert await lane.run_job(job_id) == "completed"
        report = await lane.report(job_id)
        rows = _job_rows(lane, job_id)
    assert upstream.calls["openai"] == 0 and upstream.calls["batch_create"] == 1
    assert upstream.calls["batch_lines"] == 16 == report["executed"]["provider_batch"]
    total = sum((from_pico(r["cost_pico"]) for r in rows), Decimal(0))
    assert total == upstream.batch_billed > 0  # to the picodollar
    assert report["interactive_list_cost_pico"] == 2 * report["cost_pico"] + sum(
        r["counterfactual_pico"] for r in rows if r["answered_by"])  # cached lines: list price, cost 0
    assert len(rows) == 20 and all(orjson.loads(r["savings"]).get("batch_api") for r in rows if not r["answered_by"])


async def test_anthropic_message_batches_billed_as_the_provider_billed(upstream: MockUpstream, tmp_path: Path) -> None:
    async with lane_on(mock_config(upstream, tmp_path, PB)) as lane:
        lines = [Line(i + 1, f"a{i}", {"model": "claude-test", "max_tokens": 20, "temperature": 0,
                                        "messages": [{"role": "user", "content": f"hello {i}"}]}) for i in range(6)]
        job = await lane.submit(wire="anthropic", endpoint="/v1/messages", lines=lines, prefix="msgbatch_")
        assert await lane.run_job(job["id"]) == "ended"
        rows = _job_rows(lane, job["id"])
        out = lane.store.get_file(lane.store.get_job(job["id"])["output_file_id"], content=True)["content"]
    assert upstream.calls["anthropic"] == 0 and upstream.calls["batch_lines"] == 6
    assert sum((from_pico(r["cost_pico"]) for r in rows), Decimal(0)) == upstream.batch_billed > 0
    first = orjson.loads(out.splitlines()[0])
    assert first["result"]["type"] == "succeeded" and first["thrifty"]["executed"] == "provider_batch"


async def test_two_pollers_bill_once(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"t{i}", f"two {i}") for i in range(30)]
    config = mock_config(upstream, tmp_path, PB)
    async with lane_on(config) as one, lane_on(config) as two:
        job_id = await submit(one, items)
        await asyncio.gather(one.run_job(job_id), two.run_job(job_id))
        rows = _job_rows(one, job_id)
    assert len(rows) == 30 and upstream.calls["batch_lines"] == 30
    assert sum((from_pico(r["cost_pico"]) for r in rows), Decimal(0)) == upstream.batch_billed


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
async def test_a_submitted_provider_batch_is_found_again_after_a_crash(upstream: MockUpstream, tmp_path: Path,
                                                                       shape: str) -> None:
    model, upstream_model = ("gpt-test", "gpt-4o-mini") if shape == "openai" else ("claude-test", "claude-sonnet-4-5")
    async with lane_on(mock_config(upstream, tmp_path, PB)) as lane:
        if shape == "openai":
            job_id = await submit(lane, [openai_line(f"c{i}", f"crash {i}", model=model) for i in range(5)])
        else:
            lines = [Line(i + 1, f"c{i}", {"model": model, "max_tokens": 20, "temperature": 0,
                                            "messages": [{"role": "user", "content": f"crash {i}"}]}) for i in range(5)]
            job_id = (await lane.submit(wire="anthropic", endpoint="/v1/messages", lines=lines, prefix="msgbatch_"))["id"]
        # The crash: the chunk was recorded and submitted, and the process died before it wrote the id.
        tag = f"{job_id}-c0"
        assert lane.store.add_chunk(job_id, 0, model, tag, orjson.dumps(list(range(5))).decode())
        bodies = [(i, orjson.loads(lane.store.line(job_id, i)["body"])) for i in range(5)]
        for _, b in bodies:
            b["model"] = upstream_model
            b.pop("temperature")
            b["temperature"] = 0
        protocol = "openai" if shape == "openai" else "anthropic"
        await BatchAPI(lane.gateway.config.model(model), protocol).submit(tag, bodies)
        assert upstream.calls["batch_create"] == 1
        await lane.run_job(job_id)
        rows = _job_rows(lane, job_id)
    assert upstream.calls["batch_create"] == 1  # found again, not submitted twice
    assert upstream.calls["batch_lines"] == 5 and len(rows) == 5
    assert sum((from_pico(r["cost_pico"]) for r in rows), Decimal(0)) == upstream.batch_billed


async def test_lines_a_provider_batch_did_not_answer_fall_back_to_calls(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"d{i}", f"drop {i}" + (" [drop]" if i in (1, 3) else "")) for i in range(6)]
    async with lane_on(mock_config(upstream, tmp_path, PB)) as lane:
        job_id = await submit(lane, items)
        assert await lane.run_job(job_id) == "completed"
        report = await lane.report(job_id)
        rows = {r["request_id"][-1]: r for r in _job_rows(lane, job_id)}
    assert report["succeeded"] == 6 and report["executed"] == {"calls": 2, "provider_batch": 4}
    assert upstream.calls["openai"] == 2
    assert rows["1"]["cost_pico"] == rows["1"]["counterfactual_pico"] > 0  # list price, no discount


async def test_an_expired_provider_batch_falls_back(upstream: MockUpstream, tmp_path: Path) -> None:
    upstream.batch_expire = True
    items = [openai_line(f"e{i}", f"expire {i}") for i in range(6)]
    async with lane_on(mock_config(upstream, tmp_path, PB)) as lane:
        job_id = await submit(lane, items)
        assert await lane.run_job(job_id) == "completed"
        report = await lane.report(job_id)
    assert report["executed"] == {"calls": 3, "provider_batch": 3} and upstream.calls["openai"] == 3


async def test_cancel_cancels_the_provider_batch_and_nothing_falls_back(upstream: MockUpstream, tmp_path: Path) -> None:
    upstream.batch_delay = 5.0
    items = [openai_line(f"x{i}", f"cancel me {i}") for i in range(8)]
    async with lane_on(mock_config(upstream, tmp_path, PB)) as lane:
        job_id = await submit(lane, items)
        runner = asyncio.create_task(lane.run_job(job_id))
        for _ in range(100):  # until the provider batch is submitted
            await asyncio.sleep(0.05)
            if any(c["provider_batch_id"] for c in lane.store.chunks(job_id)):
                break
        await lane.cancel(job_id)
        assert await asyncio.wait_for(runner, 20) == "cancelled"
        errors = lane.store.get_file(lane.store.get_job(job_id)["error_file_id"], content=True)["content"].splitlines()
        rows = _job_rows(lane, job_id)
    assert upstream.calls["openai"] == 0 and upstream.calls["batch_lines"] == 0 and upstream.batch_billed == 0
    assert len(errors) == 8 and all(orjson.loads(e)["error"]["code"] == "batch_cancelled" for e in errors)
    assert len(rows) == 8 and sum(r["cost_pico"] for r in rows) == 0
