"""The embedded engine as a provider that speaks OpenAI chat completions.

Requests never leave the process: the body's messages are rendered with the model's
template, the engine thread generates, and the answer comes back as a `chat.completion`
body or `chat.completion.chunk` events, with prompt tokens served from the prefix cache
reported as cached input. Local tokens cost nothing unless a price is configured.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from thrifty.config import ConfigError
from thrifty.engine.sampling import SamplingParams
from thrifty.engine.scheduler import Delta, Done, EngineError
from thrifty.engine.settings import EngineSettings, engine_settings
from thrifty.errors import UpstreamError
from thrifty.providers.base import Provider
from thrifty.types import Context, EventStream, Reply, SSEEvent, Usage

if TYPE_CHECKING:
    from thrifty.config import ModelConfig
    from thrifty.engine.runtime import EngineStream, LocalEngine


class LocalProvider(Provider):
    protocol = "openai"
    #: A local model's options override the `engine:` section for that model.
    Options = EngineSettings

    @classmethod
    def create(cls, config: ModelConfig, sections: dict[str, dict[str, Any]]) -> Provider:
        return cls(config, engine_section=sections.get("engine"))

    def __init__(
        self,
        config: ModelConfig,
        engine_section: dict[str, Any] | None = None,
        engine: LocalEngine | None = None,
    ) -> None:
        super().__init__(config)
        try:
            self.settings: EngineSettings = engine_settings(engine_section, config.options)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"local model {config.name!r}: engine settings (engine: / options:): {problems}") from None
        self.engine = engine
        self._owns_engine = engine is None

    @property
    def embeds_only(self) -> bool:
        """A local model naming the shipped MiniLM serves /v1/embeddings only (no engine)."""
        from thrifty.providers.embeddings import is_local_embedding_model

        return is_local_embedding_model(self.config)

    async def start(self) -> None:
        if self.engine is None and not self.embeds_only:
            from thrifty.engine.runtime import LocalEngine

            self.engine = await asyncio.to_thread(LocalEngine.load, self.config.model or "default", self.settings)

    async def close(self) -> None:
        if self.engine is not None and self._owns_engine:
            engine, self.engine = self.engine, None
            await asyncio.to_thread(engine.close)

    def ready(self) -> bool:
        return self.engine is not None or self.embeds_only

    def stats(self) -> dict[str, float]:
        return self.engine.stats() if self.engine is not None else {}

    def should_spill(self) -> bool:
        """True when the local queue is deeper than `engine.spill_queue_depth`: route elsewhere."""
        return self.engine.should_spill() if self.engine is not None else True

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        engine = self.engine
        if engine is None and self.embeds_only:
            raise UpstreamError(400, f"local model {self.name!r} is an embedding model: call /v1/embeddings",
                                error_type="invalid_request_error")
        if engine is None:
            raise UpstreamError(503, f"local model {self.name!r} is not loaded", retryable=True)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UpstreamError(400, "messages: a non-empty list is required", error_type="invalid_request_error")
        if int(body.get("n") or 1) != 1:
            raise UpstreamError(400, "n: the local engine returns one choice", error_type="invalid_request_error")
        prompt = engine.render(messages)
        params = _sampling(body, self.settings.default_max_tokens, prompt.stop)
        tokens = engine.encode(prompt)
        try:
            run = engine.stream(tokens, params)
        except EngineError as exc:
            raise UpstreamError(
                exc.status,
                exc.message,
                retryable=exc.status == 429,
                retry_after=exc.retry_after,
                error_type="rate_limit_error" if exc.status == 429 else "invalid_request_error",
            ) from None
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        if body.get("stream"):
            holder: list[EventStream] = []
            stream = EventStream(self._chunks(run, ident, holder))
            holder.append(stream)
            return Reply(stream=stream, served_model=self.name, provider="local")
        done = await run.collect()
        if done.finish_reason == "error":
            raise UpstreamError(500, f"local engine: {done.error}", retryable=True)
        usage = _usage(done)
        return Reply(body=self._completion(ident, done), usage=usage, served_model=self.name, provider="local")

    # -- bodies ----------------------------------------------------------------------------

    def _completion(self, ident: str, done: Done) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": _openai_usage(done),
        }

    def _chunk(self, ident: str, created: int, delta: dict[str, Any], finish: str | None) -> SSEEvent:
        return SSEEvent(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    async def _chunks(
        self, run: EngineStream, ident: str, holder: list[EventStream]
    ) -> AsyncIterator[SSEEvent]:
        """Chunks of one streamed completion; `holder[0]` is the EventStream that wraps them.

        The usage chunk is always sent, as the OpenAI provider asks its upstream to; the
        server hides it from clients that did not ask for `stream_options.include_usage`.
        """
        created = int(time.time())
        try:
            yield self._chunk(ident, created, {"role": "assistant", "content": ""}, None)
            async for event in run:
                if isinstance(event, Delta):
                    if event.text:
                        yield self._chunk(ident, created, {"content": event.text}, None)
                    continue
                stream = holder[0]
                stream.usage = _usage(event)
                if event.finish_reason == "error":
                    stream.error = f"local engine: {event.error}"
                    return
                yield self._chunk(ident, created, {}, event.finish_reason)
                yield SSEEvent(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": self.name,
                        "choices": [],
                        "usage": _openai_usage(event),
                    }
                )
                stream.complete = True
                yield SSEEvent("[DONE]")
        finally:
            run.cancel()


def _sampling(body: dict[str, Any], default_max: int, template_stop: list[str]) -> SamplingParams:
    def num(key: str, default: float) -> float:
        value = body.get(key)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise UpstreamError(400, f"{key}: must be a number", error_type="invalid_request_error")
        return float(value)

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = default_max
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise UpstreamError(400, "max_tokens: must be a positive integer", error_type="invalid_request_error")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise UpstreamError(400, "stop: a string or a list of strings", error_type="invalid_request_error")
    seed = body.get("seed")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=num("temperature", 1.0),
        top_p=min(1.0, max(1e-6, num("top_p", 1.0))),
        seed=int(seed) if isinstance(seed, int) else None,
        stop=[*stop, *template_stop],
    )


def _usage(done: Done) -> Usage:
    return Usage(
        input_tokens=done.prompt_tokens - done.cached_tokens,
        cache_read_tokens=done.cached_tokens,
        output_tokens=done.output_tokens,
    )


def _openai_usage(done: Done) -> dict[str, Any]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.output_tokens,
        "total_tokens": done.prompt_tokens + done.output_tokens,
        "prompt_tokens_details": {"cached_tokens": done.cached_tokens},
    }
