"""The lane end to end against the mock upstream: levers first, every line settled and
billed exactly once, failures kept to their line, dead workers' lines picked up."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests.batch.helpers import lane_on, openai_line, submit
from tests.conftest import mock_config
from thrifty.batch.records import line_request_id
from thrifty.errors import RateLimited
from thrifty.ledger.record import from_pico
from thrifty.testing.mock_upstream import MockUpstream

CACHE = "cache: {enabled: true}\ndedup: {enabled: true}\nbatch: {concurrency: 4, retry_backoff: 0.01, poll_seconds: 0.05, lease_seconds: 1}\n"


def _ledger(lane) -> list[dict]:  # type: ignore[no-untyped-def]
    assert lane.gateway.ledger is not None
    lane.gateway.ledger.flush()
    return list(lane.gateway.ledger.store.rows())


async def test_every_line_answered_once_in_order_and_billed_once(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"id-{i:03d}", f"question {i % 15}") for i in range(30)]  # 15 distinct texts, twice each
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        job_id = await submit(lane, items)
        assert await lane.run_job(job_id) == "completed"
        job = lane.store.get_job(job_id)
        out = [orjson.loads(x) for x in lane.store.get_file(job["output_file_id"], content=True)["content"].splitlines()]
        assert [o["custom_id"] for o in out] == [f"id-{i:03d}" for i in range(30)]
        assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: question 0"
        report = await lane.report(job_id)
        rows = [r for r in _ledger(lane) if r["request_id"].startswith(f"req_{job_id}_")]
    assert len(rows) == 30 and len({r["request_id"] for r in rows}) == 30
    # the repeats were answered by a lever (exact cache, or dedup when they ran side by side)
    assert report["from_cache"] + report["deduplicated"] == 15
    assert upstream.calls["openai"] == 15 == report["executed"]["calls"]
    assert sum(r["cost_pico"] for r in rows) == report["cost_pico"] > 0
    assert report["interactive_list_cost_pico"] == 2 * report["cost_pico"]


async def test_a_second_job_pays_only_for_new_lines(upstream: MockUpstream, tmp_path: Path) -> None:
    first = [openai_line(f"a{i}", f"topic {i}") for i in range(10)]
    second = [openai_line(f"b{i}", f"topic {i}") for i in range(4)] + [openai_line(f"b{i}", f"new {i}") for i in range(4, 10)]
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        await lane.run_job(await submit(lane, first))
        job2 = await submit(lane, second)
        await lane.run_job(job2)
        report = await lane.report(job2)
        lines = {x["custom_id"]: x for x in lane.store.lines(job2)}
        out = lane.store.get_file(lane.store.get_job(job2)["output_file_id"], content=True)["content"]
    assert report["from_cache"] == 4 and report["cached_custom_ids"] == ["b0", "b1", "b2", "b3"]
    assert all(lines[f"b{i}"]["cost_pico"] == 0 and lines[f"b{i}"]["list_pico"] > 0 for i in range(4))
    assert all(lines[f"b{i}"]["cost_pico"] > 0 for i in range(4, 10))
    assert upstream.calls["openai"] == 16
    marks = [orjson.loads(x)["thrifty"]["answered_by"] for x in out.splitlines()]
    assert marks == ["cache"] * 4 + ["provider"] * 6


async def test_settling_twice_bills_once(upstream: MockUpstream, tmp_path: Path) -> None:
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        job_id = await submit(lane, [openai_line("x", "hello")])
        await lane.run_job(job_id)
        assert not lane.store.settle(job_id, 0, state="done", cost_pico=999)  # a late second observer
        # a crash between settling and the ledger write: the row is written again, still one row
        lane.store._run("UPDATE batch_lines SET billed = 0 WHERE job_id = ?", (job_id,))
        assert await lane.bill(job_id) == 1
        rows = [r for r in _ledger(lane) if r["request_id"] == line_request_id(job_id, 0)]
        line = lane.store.line(job_id, 0)
    assert len(rows) == 1 and line is not None and line["cost_pico"] != 999 and rows[0]["cost_pico"] == line["cost_pico"]


async def test_a_dead_workers_lines_return_to_the_pool(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"l{i}", f"line {i}") for i in range(6)]
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        job_id = await submit(lane, items)
        held = lane.store.claim(job_id, "ghost-host:1:dead", 3, 0.3)  # claimed, then the worker died
        assert [h[0] for h in held] == [0, 1, 2]
        assert await asyncio.wait_for(lane.run_job(job_id), 20) == "completed"
        lines = lane.store.lines(job_id)
    assert all(x["state"] == "done" for x in lines)
    assert [x["attempts"] for x in lines[:3]] == [2, 2, 2]
    assert upstream.calls["openai"] == 6


async def test_two_workers_share_a_job_and_settle_each_line_once(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"l{i}", f"line {i} [slow 20]") for i in range(24)]
    config = mock_config(upstream, tmp_path, CACHE)
    async with lane_on(config) as one, lane_on(config) as two:
        job_id = await submit(one, items)
        results = await asyncio.gather(one.run_job(job_id), two.run_job(job_id))
        owners = {x["idx"]: x for x in one.store.lines(job_id)}
        rows = [r for r in _ledger(one) if r["request_id"].startswith(f"req_{job_id}_")]
    assert set(results) == {"completed"}
    assert len(owners) == 24 and all(x["state"] == "done" for x in owners.values())
    assert len(rows) == 24 and upstream.calls["openai"] == 24


async def test_failures_stay_local(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line("ok", "fine"), openai_line("flaky", "once [429 once]"), openai_line("broken", "no [500 always]"),
             openai_line("after", "still fine")]
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        job_id = await submit(lane, items)
        assert await lane.run_job(job_id) == "completed"
        job = lane.store.get_job(job_id)
        ok = [orjson.loads(x) for x in lane.store.get_file(job["output_file_id"], content=True)["content"].splitlines()]
        bad = [orjson.loads(x) for x in lane.store.get_file(job["error_file_id"], content=True)["content"].splitlines()]
        rows = [r for r in _ledger(lane) if r["request_id"].startswith(f"req_{job_id}_")]
    assert [o["custom_id"] for o in ok] == ["ok", "flaky", "after"]
    assert [b["custom_id"] for b in bad] == ["broken"]
    assert "broken on purpose" in bad[0]["error"]["message"] and bad[0]["response"] is None
    assert len(rows) == 4 and sum(r["status"] >= 400 for r in rows) == 1


async def test_cancel_stops_lines_not_started(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [openai_line(f"c{i}", f"slowly {i} [slow 200]") for i in range(20)]
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        job_id = await submit(lane, items)
        runner = asyncio.create_task(lane.run_job(job_id))
        await asyncio.sleep(0.3)
        await lane.cancel(job_id)
        assert await asyncio.wait_for(runner, 20) == "cancelled"
        counts = lane.store.counts(job_id)
    assert counts.get("cancelled", 0) >= 10 and counts.get("done", 0) >= 1
    assert sum(counts.values()) == 20 and upstream.calls["openai"] == counts["done"]


async def test_an_answer_that_arrived_before_a_crash_is_settled_and_billed_not_asked_again(
        upstream: MockUpstream, tmp_path: Path) -> None:
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        job_id = await submit(lane, [openai_line("only", "answered just before the crash")])
        job = lane.store.get_job(job_id)
        [(idx, cid, body, provisional)] = lane.store.claim(job_id, "ghost-host:1:dead", 1, 0.2)
        assert provisional is None
        # the dead worker got its answer (and the exact cache stored it), then died before settling
        reply = await lane.pipeline_for(job)(lane.context(job, idx, cid, orjson.loads(body)))
        assert reply.cost > 0 and upstream.calls["openai"] == 1
        await asyncio.sleep(0.3)
        assert await lane.run_job(job_id) == "completed"
        line = lane.store.line(job_id, 0)
        rows = [r for r in _ledger(lane) if r["request_id"] == line_request_id(job_id, 0)]
    assert upstream.calls["openai"] == 1  # not asked again
    assert line is not None and line["answered_by"] == "provider" and line["cost_pico"] > 0  # billed, not a free cache hit
    assert len(rows) == 1 and rows[0]["cost_pico"] == line["cost_pico"]


class RecordingBudgets:
    """A budgets extension as the lane sees it: it may refuse a reservation."""

    def __init__(self, limit: Decimal) -> None:
        self.limit = limit
        self.reserved: dict[str, Decimal] = {}
        self.spent: dict[str, Decimal] = {}
        self.released: list[str] = []

    async def reserve(self, *, job_id: str, key_name: str | None, tenant: str, amount: Decimal) -> None:
        if amount > self.limit:
            raise RateLimited(f"budget: the job needs up to ${amount}, ${self.limit} is left")
        self.reserved[job_id] = amount

    async def settle(self, *, job_id: str, line: int, cost: Decimal) -> None:
        self.spent[job_id] = self.spent.get(job_id, Decimal(0)) + cost

    async def release(self, *, job_id: str) -> None:
        self.released.append(job_id)


async def test_a_job_reserves_its_worst_case_and_settles_line_by_line(upstream: MockUpstream, tmp_path: Path) -> None:
    items = [{**openai_line(f"b{i}", f"budget {i}"), "body": {**openai_line("", f"budget {i}")["body"], "max_tokens": 100}}
             for i in range(5)]
    async with lane_on(mock_config(upstream, tmp_path, CACHE)) as lane:
        hook = RecordingBudgets(limit=Decimal("0.001"))
        lane.gateway.services.plugins["budgets"] = hook
        job_id = await submit(lane, items)
        await lane.run_job(job_id)
        cost, _listed = lane.store.money(job_id)
        hook.limit = Decimal("0.00001")
        with pytest.raises(RateLimited):
            await submit(lane, items)
        jobs = lane.store.list_jobs()
    # worst case: 5 x (input + 100 output tokens) at list price; spent: what the lines cost
    assert Decimal("0.0003") < hook.reserved[job_id] < Decimal("0.001")
    assert hook.spent[job_id] == from_pico(cost) > 0 and hook.released == [job_id]
    assert [j["id"] for j in jobs] == [job_id]  # the refused job was not created


async def test_a_webhook_gets_the_report_when_a_job_ends(upstream: MockUpstream, tmp_path: Path) -> None:
    from aiohttp import web

    from tests.conftest import serving

    got: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/done", hook)
    async with serving(app) as port:
        config = mock_config(upstream, tmp_path, CACHE.replace("lease_seconds: 1}", f"lease_seconds: 1, webhook_url: 'http://127.0.0.1:{port}/done'}}"))
        async with lane_on(config) as lane:
            job_id = await submit(lane, [openai_line("w", "webhook")])
            await lane.run_job(job_id)
            await lane.finalize(job_id)  # ended already: no second call
    assert len(got) == 1 and got[0]["id"] == job_id and got[0]["lines"] == 1 and got[0]["status"] == "completed"


async def test_the_rate_budget_spaces_upstream_calls(upstream: MockUpstream, tmp_path: Path) -> None:
    config = mock_config(upstream, tmp_path, CACHE.replace("concurrency: 4", "concurrency: 4, rate: 5"))
    async with lane_on(config) as lane:
        job_id = await submit(lane, [openai_line(f"r{i}", f"rate {i}") for i in range(15)])
        started = asyncio.get_running_loop().time()
        await lane.run_job(job_id)
        took = asyncio.get_running_loop().time() - started
    # a bucket of 5 calls a second: the first 5 at once, the other 10 over about 2 seconds
    assert took >= 1.6 and upstream.calls["openai"] == 15


async def test_lines_not_run_by_the_deadline_expire(upstream: MockUpstream, tmp_path: Path) -> None:
    config = mock_config(upstream, tmp_path, CACHE.replace("concurrency: 4", "concurrency: 1"))
    async with lane_on(config) as lane:
        job_id = await submit(lane, [openai_line(f"d{i}", f"deadline {i} [slow 300]") for i in range(6)], deadline_s=0.5)
        assert await asyncio.wait_for(lane.run_job(job_id), 20) == "expired"
        job = lane.store.get_job(job_id)
        errors = [orjson.loads(x) for x in lane.store.get_file(job["error_file_id"], content=True)["content"].splitlines()]
        counts = lane.store.counts(job_id)
    assert 1 <= counts["done"] <= 3 and counts["expired"] == 6 - counts["done"]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"} and upstream.calls["openai"] == counts["done"]


def test_queue_depth_counts_the_lines_of_unfinished_jobs_only(tmp_path: Path) -> None:
    from thrifty.batch.store import BatchStore

    store = BatchStore(f"sqlite:///{tmp_path}/batch.db")
    try:
        for job_id in ("open", "done"):
            store.create_job({"id": job_id, "protocol": "openai", "endpoint": "/v1/chat/completions",
                              "status": "in_progress", "target": "calls", "created_at": 1.0, "deadline_at": 2.0,
                              "tenant": "default", "metadata": "{}", "lines": 3},
                             [(i, f"c{i}", "{}") for i in range(3)])
        store.settle("open", 0, state="done")
        assert store.queue_depth() == 5  # 2 waiting of "open", 3 of "done" until it ends
        assert store.finish_job("done", "completed", None, None)
        assert store.queue_depth() == 2
    finally:
        store.close()
