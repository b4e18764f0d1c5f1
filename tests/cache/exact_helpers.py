"""A counting fake of everything after a stage (`next`), and request contexts, for cache tests.

The fake answers in the OpenAI or Anthropic protocol, complete or streamed, after a delay,
and can fail or cut its stream short; it counts its calls so tests can prove sharing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.providers.base import UpstreamError
from thrifty.types import Context, EventStream, Reply, SSEEvent, Usage

COST = Decimal("0.00125")


def gateway(yaml_text: str) -> Gateway:
    return Gateway(parse_config(yaml_text))


def question(ctx: Context) -> str:
    messages = ctx.body.get("messages") or []
    content = messages[-1]["content"] if messages else ""
    return content if isinstance(content, str) else str(content)


def answer_for(tenant: str, q: str) -> str:
    return f"[{tenant}] the answer to {q!r} is forty two"


def openai_ctx(
    gw: Gateway,
    q: str = "what is the answer?",
    *,
    stream: bool = False,
    tenant: str = "default",
    temperature: float | None = 0,
    headers: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    include_usage: bool = True,
    **extra: Any,
) -> Context:
    body: dict[str, Any] = {"model": "gpt-test", "messages": [{"role": "user", "content": q}], **extra}
    if temperature is not None:
        body["temperature"] = temperature
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return Context(
        protocol="openai", body=body, config=gw.config, tenant=tenant, headers=headers or {}, tags=dict(tags or {})
    )


def anthropic_ctx(gw: Gateway, q: str = "what is the answer?", *, stream: bool = False, tenant: str = "default") -> Context:
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 100,
        "temperature": 0,
        "messages": [{"role": "user", "content": q}],
    }
    if stream:
        body["stream"] = True
    return Context(protocol="anthropic", body=body, config=gw.config, tenant=tenant)


class FakeUpstream:
    """Stands in for the rest of the pipeline: counts calls, answers after `delay` seconds."""

    def __init__(
        self,
        delay: float = 0.05,
        *,
        fail_status: int | None = None,
        raise_status: int | None = None,
        cut_after: int | None = None,
        chunk_delay: float = 0.0,
        fail_times: int | None = None,
    ) -> None:
        self.delay = delay
        self.fail_status = fail_status
        self.raise_status = raise_status
        self.cut_after = cut_after
        self.chunk_delay = chunk_delay
        #: Fail only the first `fail_times` calls (None: all of them).
        self.fail_times = fail_times
        self.calls = 0

    def _failing(self) -> bool:
        return self.fail_times is None or self.calls <= self.fail_times

    async def __call__(self, ctx: Context) -> Reply:
        self.calls += 1
        ctx.target_model = "gpt-test"
        await asyncio.sleep(self.delay)
        if self.raise_status is not None and self._failing():
            raise UpstreamError(self.raise_status, f"upstream said {self.raise_status}")
        if self.fail_status is not None and self._failing():
            return Reply(status=self.fail_status, body={"error": {"message": "overloaded"}})
        text = answer_for(ctx.tenant, question(ctx))
        usage = Usage(input_tokens=10, output_tokens=7)
        if ctx.protocol == "anthropic":
            return self._anthropic(ctx, text, usage)
        if not ctx.stream:
            body = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "gpt-test",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
            }
            return Reply(body=body, usage=usage, served_model="gpt-test", provider="mock", cost=COST)
        include_usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))
        reply = Reply(served_model="gpt-test", provider="mock")
        holder: list[EventStream] = []
        reply.stream = EventStream(self._openai_chunks(holder, reply, text, usage, include_usage))
        holder.append(reply.stream)
        return reply

    def _anthropic(self, ctx: Context, text: str, usage: Usage) -> Reply:
        body = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 7},
        }
        if not ctx.stream:
            return Reply(body=body, usage=usage, served_model="claude-test", provider="mock", cost=COST)
        from thrifty.protocol.anthropic import replay_anthropic

        reply = Reply(served_model="claude-test", provider="mock")
        holder: list[EventStream] = []
        reply.stream = EventStream(self._events(holder, reply, replay_anthropic(body), usage))
        holder.append(reply.stream)
        return reply

    async def _events(
        self, holder: list[EventStream], reply: Reply, events: list[SSEEvent], usage: Usage
    ) -> AsyncIterator[SSEEvent]:
        for event in events:
            await asyncio.sleep(self.chunk_delay)
            yield event
        holder[0].usage = usage
        holder[0].complete = True
        reply.cost = COST

    async def _openai_chunks(
        self, holder: list[EventStream], reply: Reply, text: str, usage: Usage, include_usage: bool
    ) -> AsyncIterator[SSEEvent]:
        """Chunks as a provider streams them; like dispatch, it prices the reply at the end."""
        stream = holder[0]
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-test"}
        words = text.split(" ")
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}})
        for n, chunk in enumerate(chunks):
            if self.cut_after is not None and n >= self.cut_after:
                stream.error = "upstream connection reset"
                return
            await asyncio.sleep(self.chunk_delay)
            yield SSEEvent(data=chunk)
        yield SSEEvent(data="[DONE]")
        stream.usage = usage
        stream.complete = True
        reply.cost = COST


async def read_reply(reply: Reply) -> tuple[str, list[SSEEvent]]:
    """The answer text of a reply (whole or streamed, either protocol) and its events."""
    if reply.stream is None:
        assert reply.body is not None
        if "choices" in reply.body:
            return reply.body["choices"][0]["message"]["content"], []
        return "".join(b.get("text", "") for b in reply.body["content"]), []
    events = [e async for e in reply.stream]
    text = ""
    for e in events:
        if not isinstance(e.data, dict):
            continue
        for choice in e.data.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
        delta = e.data.get("delta") or {}
        if delta.get("type") == "text_delta":
            text += delta.get("text", "")
    return text, events
