"""Shared pieces of the batch tests: input lines and a gateway with a lane on the mock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from thrifty.batch.inputs import parse_jsonl
from thrifty.batch.lane import BatchLane
from thrifty.config import parse_config
from thrifty.gateway import Gateway


def openai_line(custom_id: str, text: str, model: str = "gpt-test") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "temperature": 0, "messages": [{"role": "user", "content": text}]}}


def jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(i) + b"\n" for i in items)


@asynccontextmanager
async def lane_on(config: str) -> AsyncIterator[BatchLane]:
    gateway = Gateway(parse_config(config))
    await gateway.start()
    lane = BatchLane(gateway)
    try:
        yield lane
    finally:
        await lane.aclose()
        await gateway.close()


async def submit(lane: BatchLane, items: list[dict[str, Any]], **kw: Any) -> str:
    wire, lines = parse_jsonl(jsonl(items), endpoint=None, known_model=lane.gateway.config.has_model,
                              max_bytes=10**7, max_lines=10**5)
    job = await lane.submit(wire=wire, endpoint="/v1/chat/completions", lines=lines, **kw)
    return str(job["id"])
