"""OpenAI-compatible providers: OpenAI, vLLM, SGLang, llama.cpp server, Ollama, Together, Groq, ..."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from thrifty.config import DEFAULT_BASE_URLS
from thrifty.pipeline.context import Context, EventStream, Reply, SSEEvent
from thrifty.protocol.openai import usage_from_openai
from thrifty.providers.base import Provider, UpstreamError
from thrifty.providers.http import connection_error, session, sse_events, upstream_error


class OpenAIProvider(Provider):
    protocol = "openai"

    @property
    def url(self) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/")
        return base + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        key = self.config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        body = {**body, "model": self.config.upstream_model}
        streaming = bool(body.get("stream"))
        if streaming:
            # Always ask for usage so the ledger is exact; the server hides the usage chunk
            # from clients that did not ask for it.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        timeout = aiohttp.ClientTimeout(
            total=None if streaming else self.config.timeout,
            connect=self.config.connect_timeout,
            sock_read=self.config.timeout,
        )
        key = self.config.api_key()
        try:
            resp = await session().post(self.url, data=orjson.dumps(body), headers=self._headers(), timeout=timeout)
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
            return Reply(status=resp.status, body=data, usage=usage_from_openai(data.get("usage")))
        stream: EventStream = EventStream(self._relay(resp, lambda: stream))
        return Reply(status=resp.status, stream=stream)

    async def _relay(self, resp: aiohttp.ClientResponse, holder: Any) -> AsyncIterator[SSEEvent]:
        stream: EventStream = holder()
        finished = False
        try:
            async for ev in sse_events(resp):
                data = ev.data
                if data == "[DONE]":
                    stream.complete = True
                    yield ev
                    continue
                if isinstance(data, dict):
                    if data.get("error"):
                        err = data["error"]
                        stream.error = str(err.get("message") if isinstance(err, dict) else err)
                        return
                    usage = data.get("usage")
                    if usage:
                        stream.usage = usage_from_openai(usage)
                    for choice in data.get("choices") or ():
                        if choice.get("finish_reason"):
                            finished = True
                yield ev
            if not stream.complete and finished:
                stream.complete = True
            if not stream.complete:
                stream.error = "the upstream closed the stream before it finished"
        except (TimeoutError, aiohttp.ClientError) as exc:
            stream.error = connection_error(exc, f"{self.name} upstream").message
        finally:
            resp.release()
