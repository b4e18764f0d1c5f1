"""OpenAI-compatible providers: OpenAI, vLLM, SGLang, llama.cpp server, Ollama, Together, Groq, ..."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from thrifty.config import DEFAULT_BASE_URLS
from thrifty.protocol.openai import usage_from_openai
from thrifty.providers.base import Provider
from thrifty.providers.transport import connection_error, post, scrub, sse_events
from thrifty.types import Context, EventStream, Reply, SSEEvent


class OpenAIProvider(Provider):
    protocol = "openai"

    @property
    def url(self) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/")
        return base + "/chat/completions"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        body = {**body, "model": self.config.upstream_model}
        streaming = bool(body.get("stream"))
        if streaming:
            # Always ask for usage so the ledger is exact; the server hides the usage chunk
            # from clients that did not ask for it.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        key = self.config.api_key()
        answer = await post(
            self.name, self.url, body, self._headers(key), streaming=streaming, timeout=self.config.timeout,
            connect_timeout=self.config.connect_timeout, secret=key,
        )
        if isinstance(answer, dict):
            return Reply(status=200, body=answer, usage=usage_from_openai(answer.get("usage")))
        stream: EventStream = EventStream(self._relay(answer, lambda: stream))
        return Reply(status=answer.status, stream=stream)

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
                if not isinstance(data, dict):
                    continue  # not JSON: no client could parse it
                if data.get("error"):
                    err = data["error"]
                    stream.error = scrub(str(err.get("message") if isinstance(err, dict) else err),
                                         self.config.api_key())
                    return
                usage = data.get("usage")
                if usage:
                    stream.usage = usage_from_openai(usage)
                choices = data.get("choices")
                if choices is not None:
                    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
                        continue  # a chunk of the wrong shape
                    if any(c.get("finish_reason") for c in choices):
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
