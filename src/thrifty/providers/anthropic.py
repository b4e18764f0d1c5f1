"""The native Anthropic Messages provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from thrifty.config import DEFAULT_BASE_URLS
from thrifty.errors import UpstreamError
from thrifty.protocol.anthropic import usage_from_anthropic
from thrifty.providers.base import Provider
from thrifty.providers.transport import (
    connection_error,
    post,
    reading,
    scrub,
    session,
    sse_events,
    upstream_error,
)
from thrifty.types import Context, EventStream, Reply, SSEEvent, Usage

API_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    protocol = "anthropic"

    @property
    def url(self) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URLS["anthropic"]).rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + "/v1/messages"

    def _headers(self, ctx: Context) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": ctx.headers.get("anthropic-version", API_VERSION),
            **self.config.headers,
        }
        beta = ctx.headers.get("anthropic-beta")
        if beta and ctx.protocol == "anthropic":
            headers["anthropic-beta"] = beta
        key = self.config.api_key()
        if key:
            headers["x-api-key"] = key
        return headers

    async def count_tokens(self, body: dict[str, Any], headers: Any) -> int:
        """Ask the upstream's own token counter (exact for Anthropic models)."""
        payload = {k: v for k, v in body.items() if k in ("messages", "system", "tools", "tool_choice", "thinking")}
        payload["model"] = self.config.upstream_model
        hdrs = {"Content-Type": "application/json", "anthropic-version": headers.get("anthropic-version", API_VERSION)}
        key = self.config.api_key()
        if key:
            hdrs["x-api-key"] = key
        timeout = aiohttp.ClientTimeout(total=self.config.timeout, connect=self.config.connect_timeout)
        try:
            async with session().post(self.url + "/count_tokens", data=orjson.dumps(payload), headers=hdrs,
                                      timeout=timeout) as resp:
                if resp.status >= 400:
                    raise await upstream_error(resp, key)
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise connection_error(exc, f"{self.name} upstream") from None
        try:
            return int(orjson.loads(raw)["input_tokens"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(502, f"{self.name} upstream's token count has no input_tokens number") from None

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        body = {**body, "model": self.config.upstream_model}
        streaming = bool(body.get("stream"))
        answer = await post(
            self.name, self.url, body, self._headers(ctx), streaming=streaming, timeout=self.config.timeout,
            connect_timeout=self.config.connect_timeout, secret=self.config.api_key(),
        )
        if isinstance(answer, dict):
            return Reply(status=200, body=answer, usage=usage_from_anthropic(answer.get("usage")))
        stream: EventStream = EventStream(self._relay(answer, lambda: stream))
        return Reply(status=answer.status, stream=stream)

    async def _relay(self, resp: aiohttp.ClientResponse, holder: Any) -> AsyncIterator[SSEEvent]:
        stream: EventStream = holder()
        usage: dict[str, Any] = {}
        try:
            async with reading(resp, stream, self.name):
                async for ev in sse_events(resp):
                    data = ev.data
                    if not isinstance(data, dict):
                        continue  # not JSON: no client could parse it
                    kind = data.get("type")
                    if kind == "message_start":
                        message = data.get("message")
                        if not isinstance(message, dict):
                            continue  # an event of the wrong shape
                        usage.update(_dict(message.get("usage")))
                        stream.usage = usage_from_anthropic(usage)
                    elif kind == "message_delta":
                        if not isinstance(data.get("usage", {}), dict):
                            continue  # an event of the wrong shape
                        # Later counts replace earlier ones; output_tokens is cumulative.
                        usage.update({k: v for k, v in _dict(data.get("usage")).items() if v is not None})
                        stream.usage = usage_from_anthropic(usage)
                    elif kind == "message_stop":
                        stream.complete = True
                    elif kind == "error":
                        err = data.get("error")
                        message = err.get("message") if isinstance(err, dict) else err
                        stream.error = scrub(str(message or "upstream error"), self.config.api_key())
                        return
                    yield ev
        finally:
            if stream.usage == Usage() and usage:
                stream.usage = usage_from_anthropic(usage)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
