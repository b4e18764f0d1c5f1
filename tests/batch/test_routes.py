"""The OpenAI Files + Batches and Anthropic Message Batches routes, driven by the official
SDKs unchanged, and bad input refused at submission with nothing half-created."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import anthropic
import openai
import orjson
import pytest

from tests.batch.helpers import jsonl, openai_line
from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

BATCH = "cache: {enabled: true}\ndedup: {enabled: true}\nbatch: {concurrency: 4, poll_seconds: 0.05, retry_backoff: 0.01, max_file_bytes: 200000}\n"


@pytest.fixture
async def gw(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(mock_config(upstream, tmp_path, BATCH))


async def _until(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value is not None:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_openai_sdk_batch_round_trip(gw: RunningGateway, upstream: MockUpstream) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
    items = [openai_line(f"r{i}", f"q {i % 3}") for i in range(6)] + [openai_line("bad", "x [500 always]")]
    uploaded = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(items))), purpose="batch")
    assert (await client.files.retrieve(uploaded.id)).bytes == len(jsonl(items))
    created = await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                          completion_window="24h", metadata={"team": "eval"})
    assert created.status in ("validating", "in_progress") and created.metadata == {"team": "eval"}

    async def ended():  # type: ignore[no-untyped-def]
        b = await client.batches.retrieve(created.id)
        return b if b.status == "completed" else None

    done = await _until(ended)
    assert done.request_counts is not None and done.request_counts.total == 7
    assert done.request_counts.completed == 6 and done.request_counts.failed == 1
    out = (await client.files.content(done.output_file_id)).text.splitlines()
    assert [orjson.loads(x)["custom_id"] for x in out] == [f"r{i}" for i in range(6)]
    assert orjson.loads(out[0])["response"]["body"]["choices"][0]["message"]["content"] == "echo: q 0"
    err = [orjson.loads(x) for x in (await client.files.content(done.error_file_id)).text.splitlines()]
    assert err[0]["custom_id"] == "bad" and "broken on purpose" in err[0]["error"]["message"]
    listed = await client.batches.list()
    assert [b.id for b in listed.data] == [created.id]
    report = orjson.loads((await client._client.get(f"{gw.url}/v1/thrifty/batches/{created.id}/report")).content)
    assert report["lines"] == 7 and report["failed"] == 1
    assert report["from_cache"] + report["deduplicated"] == 3 and upstream.calls["openai"] == 3 + 3 * 4  # 3 texts; the 500 line: 3 tries (model) x 4 (batch.max_attempts)
    rows = [r for r in gw.rows() if r["request_id"].startswith(f"req_{created.id}_")]
    assert len(rows) == 7


async def test_openai_sdk_cancel(gw: RunningGateway) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
    items = [openai_line(f"s{i}", f"slow {i} [slow 300]") for i in range(30)]
    f = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(items))), purpose="batch")
    b = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    await asyncio.sleep(0.5)
    cancelled = await client.batches.cancel(b.id)
    assert cancelled.status in ("cancelling", "cancelled")

    async def ended():  # type: ignore[no-untyped-def]
        x = await client.batches.retrieve(b.id)
        return x if x.status == "cancelled" else None

    done = await _until(ended)
    assert done.request_counts is not None and done.request_counts.failed >= 20
    errors = (await client.files.content(done.error_file_id)).text.splitlines()
    assert orjson.loads(errors[-1])["error"]["code"] == "batch_cancelled"


@pytest.mark.parametrize(("content", "expected"), [
    (b"not json at all\n", "line 1: not JSON"),
    (jsonl([openai_line("a", "x"), openai_line("b", "y", model="no-such-model")]), "line 2: the model 'no-such-model'"),
    (jsonl([openai_line("a", "x"), {**openai_line("b", "y"), "custom_id": ""}]), "line 2: missing 'custom_id'"),
    (jsonl([openai_line("a", "x"), openai_line("b", "y"), openai_line("a", "z")]), "line 3: duplicate custom_id 'a' (first on line 1)"),
    (jsonl([{**openai_line("a", "x"), "url": "/v1/embeddings"}]), "line 1: thrifty does not serve batches for the url '/v1/embeddings'"),
])
async def test_bad_input_is_refused_with_its_line_and_nothing_is_created(gw: RunningGateway, content: bytes,
                                                                        expected: str) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
    f = await client.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert expected in str(caught.value.body), caught.value.body
    assert (await client.batches.list()).data == []


async def test_unsupported_endpoint_and_oversized_file_are_refused(gw: RunningGateway) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
    f = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl([openai_line("a", "x")]))), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        await client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    big = jsonl([openai_line(f"n{i}", "x" * 1000) for i in range(250)])
    with pytest.raises(openai.APIStatusError) as caught:
        await client.files.create(file=("big.jsonl", io.BytesIO(big)), purpose="batch")
    assert caught.value.status_code == 413 and "batch.max_file_bytes" in str(caught.value.body)
    assert (await client.batches.list()).data == []


async def test_anthropic_sdk_message_batches(gw: RunningGateway, upstream: MockUpstream) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused")
    requests = [{"custom_id": f"m{i}", "params": {"model": "claude-test", "max_tokens": 50, "temperature": 0,
                                                   "messages": [{"role": "user", "content": f"hi {i}"}]}}
                for i in range(4)]
    created = await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert created.processing_status == "in_progress"

    async def ended():  # type: ignore[no-untyped-def]
        b = await client.messages.batches.retrieve(created.id)
        return b if b.processing_status == "ended" else None

    done = await _until(ended)
    assert done.request_counts.succeeded == 4
    results = [r async for r in await client.messages.batches.results(created.id)]
    assert [r.custom_id for r in results] == ["m0", "m1", "m2", "m3"]
    assert results[0].result.type == "succeeded" and results[0].result.message.content[0].text == "echo: hi 0"  # type: ignore[union-attr]
    assert upstream.calls["anthropic"] == 4
    listed = await client.messages.batches.list()
    assert [b.id for b in listed.data] == [created.id]


async def test_anthropic_bad_request_names_its_index(gw: RunningGateway) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused")
    good = {"custom_id": "a", "params": {"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}}
    with pytest.raises(anthropic.BadRequestError, match="line 2: duplicate custom_id 'a'"):
        await client.messages.batches.create(requests=[good, good])  # type: ignore[list-item]
    assert (await client.messages.batches.list()).data == []
