"""A local upstream on a real socket that answers with whatever events or body a test sets,
so the official `openai` and `anthropic` SDKs parse our streams exactly as they parse a live one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import serving
from thrifty.types import SSEEvent


def encode_sse(event: SSEEvent) -> bytes:
    data = event.data if isinstance(event.data, str) else json.dumps(event.data)
    head = f"event: {event.event}\n" if event.event else ""
    return f"{head}data: {data}\n\n".encode()


def payload(event: SSEEvent) -> dict[str, Any]:
    """The JSON object an event carries (not `[DONE]`)."""
    assert isinstance(event.data, dict)
    return event.data


@dataclass
class Upstream:
    """What the local upstream answers next: SSE events, or a JSON body with a status."""

    url: str = ""
    events: list[SSEEvent] = field(default_factory=list)
    body: dict[str, Any] | None = None
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream()

    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests.append(await request.json())
        if state.body is not None:
            return web.json_response(state.body, status=state.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in state.events:
            await response.write(encode_sse(event))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_post("/v1/messages", handle)
    async with serving(app) as port:
        state.url = f"http://127.0.0.1:{port}"
        yield state
