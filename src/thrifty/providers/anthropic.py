"""The native Anthropic Messages provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from thrifty.config import DEFAULT_BASE_URLS
from thrifty.pipeline.context import Context, EventStream, Reply, SSEEvent, Usage
from thrifty.protocol.anthropic import usage_from_anthropic
from thrifty.providers.base import Provider, UpstreamError
from thrifty.providers.http import connection_error, session, sse_events, upstream_error

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
                return int((await resp.json())["input_tokens"])
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise connection_error(exc, f"{self.name} upstream") from None

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        body = {**body, "model": self.config.upstream_model}
        streaming = bool(body.get("stream"))
        timeout = aiohttp.ClientTimeout(
            total=None if streaming else self.config.timeout,
            connect=self.config.connect_timeout,
            sock_read=self.config.timeout,
        )
        key = self.config.api_key()
        try:
            resp = await session().post(self.url, data=orjson.dumps(body), headers=self._headers(ctx), timeout=timeout)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise connection_error(exc, f"{self.name} upstream") from None
        if resp.status >= 400:
            err = await upstream_error(resp, key)
            resp.release()
            raise err
        if not streaming:
            try:
                data = orjson.loads(await resp.read())
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise connection_error(exc, f"{self.name} upstream") from None
            except orjson.JSONDecodeError:
                raise UpstreamError(502, f"{self.name} upstream sent a body that is not JSON", retryable=True) from None
            finally:
                resp.release()
            return Reply(status=resp.status, body=data, usage=usage_from_anthropic(data.get("usage")))
        stream: EventStream = EventStream(self._relay(resp, lambda: stream))
        return Reply(status=resp.status, stream=stream)

    async def _relay(self, resp: aiohttp.ClientResponse, holder: Any) -> AsyncIterator[SSEEvent]:
        stream: EventStream = holder()
        usage: dict[str, Any] = {}
        try:
            async for ev in sse_events(resp):
                data = ev.data
                if isinstance(data, dict):
                    kind = data.get("type")
                    if kind == "message_start":
                        usage.update((data.get("message") or {}).get("usage") or {})
                        stream.usage = usage_from_anthropic(usage)
                    elif kind == "message_delta":
                        # Later counts replace earlier ones; output_tokens is cumulative.
                        usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
                        stream.usage = usage_from_anthropic(usage)
                    elif kind == "message_stop":
                        stream.complete = True
                    elif kind == "error":
                        err = data.get("error") or {}
                        stream.error = str(err.get("message") or "upstream error")
                        return
                yield ev
            if not stream.complete:
                stream.error = "the upstream closed the stream before it finished"
        except (TimeoutError, aiohttp.ClientError) as exc:
            stream.error = connection_error(exc, f"{self.name} upstream").message
        finally:
            if stream.usage == Usage() and usage:
                stream.usage = usage_from_anthropic(usage)
            resp.release()
