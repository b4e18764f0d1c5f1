"""The engine as the rest of thrifty sees it: load a model, render chat prompts, stream tokens.

`LocalEngine.stream()` returns an async iterator fed from the engine thread through
`call_soon_threadsafe`; leaving the iteration early (client disconnect, task cancelled)
cancels the sequence so its KV cells are freed at the next step.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from thrifty.engine.llama import LlamaModel
from thrifty.engine.model_files import resolve_model_path
from thrifty.engine.sampling import SamplingParams
from thrifty.engine.scheduler import Delta, Done, Engine, Event, Request
from thrifty.engine.settings import EngineSettings
from thrifty.engine.template import Prompt, is_base_model, plain_prompt
from thrifty.protocol.view import content_text


class EngineStream:
    """One request's events, consumed on an asyncio loop."""

    def __init__(self, engine: Engine, prompt: list[int], params: SamplingParams) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._engine = engine
        self.done: Done | None = None
        self.request: Request = engine.submit(prompt, params, self._put)

    def _put(self, event: Event) -> None:  # engine thread
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is gone; nobody is listening
            self._engine.cancel(self.request)

    async def __aiter__(self) -> AsyncGenerator[Event, None]:
        try:
            while self.done is None:
                event = await self._queue.get()
                if isinstance(event, Done):
                    self.done = event
                yield event
        finally:
            if self.done is None:
                self._engine.cancel(self.request)

    def cancel(self) -> None:
        if self.done is None:
            self._engine.cancel(self.request)

    async def collect(self) -> Done:
        async for _ in self:
            pass
        assert self.done is not None
        return self.done


class LocalEngine:
    """A loaded GGUF with its scheduler thread."""

    def __init__(self, model: LlamaModel, settings: EngineSettings) -> None:
        self.model = model
        self.settings = settings
        self.engine = Engine(model, settings)
        template = model.chat_template()
        name = model.meta("general.name") or Path(model.path).name
        finetune = model.meta("general.finetune") or ""
        self.chat_template = settings.chat_template or None
        if self.chat_template:
            self.template = "chat"
        elif settings.template == "auto":
            base = is_base_model(f"{name} {finetune} {Path(model.path).name}", template)
            self.template = "plain" if base else "chat"
        else:
            self.template = settings.template
        self.name = name

    @classmethod
    def load(cls, model: str, settings: EngineSettings | None = None) -> LocalEngine:
        """Load `model` ("default" or a GGUF path). Blocking: call it in a worker thread."""
        settings = settings or EngineSettings()
        path = resolve_model_path(model)
        capacity = max(settings.prefill_chunk, settings.max_active * (1 + settings.lookup_draft_tokens))
        n_seq = settings.max_active + settings.prefix_cache_slots
        return cls(LlamaModel(path, settings, n_seq=n_seq, batch_capacity=capacity), settings)

    # -- prompts ---------------------------------------------------------------------------

    def render(self, messages: list[dict[str, Any]]) -> Prompt:
        pairs = [(str(m.get("role", "user")), content_text(m.get("content"), sep="", types=("text", "input_text"))) for m in messages]
        if self.template == "chat":
            text = self.model.apply_chat_template(pairs, self.chat_template)
            if text is not None:
                return Prompt(text, special=True)
        return plain_prompt(pairs)

    def encode(self, prompt: Prompt) -> list[int]:
        return self.model.tokenize(prompt.text, add_special=True, parse_special=prompt.special)

    # -- generation ------------------------------------------------------------------------

    def stream(self, prompt: list[int], params: SamplingParams) -> EngineStream:
        """Start a sequence; raises EngineError (400/429) before anything runs."""
        return EngineStream(self.engine, prompt, params)

    def generate(self, prompt: list[int], params: SamplingParams) -> Done:
        """Blocking generation for scripts and benchmarks (not for the event loop)."""
        box: queue.Queue[Event] = queue.Queue()
        self.engine.submit(prompt, params, box.put)
        while True:
            event = box.get()
            if isinstance(event, Done):
                return event

    def stats(self) -> dict[str, float]:
        return self.engine.stats()

    def should_spill(self) -> bool:
        return self.engine.should_spill()

    def close(self) -> None:
        self.engine.close()


__all__ = ["Delta", "Done", "EngineStream", "LocalEngine"]
