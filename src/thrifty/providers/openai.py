"""OpenAI-compatible providers: OpenAI, vLLM, SGLang, llama.cpp server, Ollama, Together, Groq, ...

Chat completions go to `<base_url>/chat/completions`. A `/v1/responses` request goes to
`<base_url>/responses` as is when the model serves the Responses API itself, which the
`responses` option says:

    options: {responses: auto}   # auto (default): native for OpenAI's own API (no base_url,
                                 #   or api.openai.com), translated to chat for other servers
                                 # native: always pass through; translate: always chat
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict

from thrifty.config import DEFAULT_BASE_URLS
from thrifty.errors import UpstreamError
from thrifty.protocol.openai import usage_from_openai
from thrifty.protocol.responses_native import FINAL_EVENTS, is_response, usage_from_responses
from thrifty.providers.base import Provider
from thrifty.providers.transport import post, reading, scrub, sse_events
from thrifty.types import Context, EventStream, Reply, SSEEvent

__all__ = ["OpenAIOptions", "OpenAIProvider"]


class OpenAIOptions(BaseModel):
    """`options:` of an `openai` model."""

    model_config = ConfigDict(extra="forbid")

    #: How a `/v1/responses` request reaches this model: passed through to its own
    #: Responses API (native), translated to chat completions (translate), or native only
    #: for OpenAI's API itself (auto).
    responses: Literal["auto", "native", "translate"] = "auto"


class OpenAIProvider(Provider):
    protocol = "openai"
    Options: ClassVar[type[BaseModel]] = OpenAIOptions

    def speaks_responses(self) -> bool:
        mode = OpenAIOptions.model_validate(self.config.options).responses
        if mode != "auto":
            return mode == "native"
        base = self.config.base_url
        return base is None or urlsplit(base).hostname == "api.openai.com"

    @property
    def base(self) -> str:
        return (self.config.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/")

    @property
    def url(self) -> str:
        return self.base + "/chat/completions"

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
        async with reading(resp, stream, self.name):
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

    # -- the Responses API, passed through ------------------------------------------------

    async def send_responses(self, body: dict[str, Any], ctx: Context) -> Reply:
        body = {**body, "model": self.config.upstream_model}
        streaming = bool(body.get("stream"))
        key = self.config.api_key()
        answer = await post(
            self.name, self.base + "/responses", body, self._headers(key), streaming=streaming,
            timeout=self.config.timeout, connect_timeout=self.config.connect_timeout, secret=key,
        )
        if isinstance(answer, dict):
            if not is_response(answer) or not isinstance(answer.get("output"), list):
                raise UpstreamError(502, f"model {self.name!r} answered /responses with a body that is not a "
                                    "response object (no object: response with an output list)", error_type="api_error")
            return Reply(status=200, body=answer, usage=usage_from_responses(answer.get("usage")))
        stream: EventStream = EventStream(self._relay_responses(answer, lambda: stream))
        return Reply(status=answer.status, stream=stream)

    async def _relay_responses(self, resp: aiohttp.ClientResponse, holder: Any) -> AsyncIterator[SSEEvent]:
        """The upstream's Responses events as they come; usage and the ending read from the
        final event (`response.completed` or `response.incomplete`: complete; `failed` or
        `error`: an error)."""
        stream: EventStream = holder()
        async with reading(resp, stream, self.name):
            async for ev in sse_events(resp):
                data = ev.data
                if not isinstance(data, dict):
                    continue  # not JSON (the Responses API sends no [DONE])
                kind = data.get("type")
                if kind == "error":
                    stream.error = scrub(str(data.get("message") or data.get("code") or "upstream error"),
                                         self.config.api_key())
                    return
                if kind in FINAL_EVENTS:
                    response = data["response"] if isinstance(data.get("response"), dict) else {}
                    stream.usage = usage_from_responses(response.get("usage"))
                    if kind == "response.failed":
                        error = response.get("error")
                        message = error.get("message") if isinstance(error, dict) else None
                        stream.error = scrub(str(message or "the upstream response failed"), self.config.api_key())
                        return
                    stream.complete = True
                yield ev
