"""The `replay` provider: answers from a recorded dataset instead of a live model.

Given a labeled routing file (`thrifty.routing.labeled`), a prompt is answered with the
response the configured model gave to it when the data was recorded, at the cost recorded
then (`Reply.cost`, exact). It lets the whole gateway (routing, caching, the ledger) run end to
end against real answers of real models, offline and for free:

    models:
      - name: gpt-4-1106-preview
        provider: replay
        model: gpt-4-1106-preview          # the recorded model whose answers to give
        options: {dataset: mbpp_test.jsonl}

A prompt is looked up by its user turns (whitespace-trimmed). Token usage is counted from the
texts (cl100k), marked as estimated; the cost is the recorded one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from thrifty.errors import ConfigError, UpstreamError
from thrifty.protocol.replay import replay_events
from thrifty.protocol.view import request_text
from thrifty.providers.base import Provider
from thrifty.types import Context, EventStream, Reply, Usage

if TYPE_CHECKING:
    from thrifty.config import ModelConfig
    from thrifty.routing.labeled import Candidate


class ReplayOptions(BaseModel):
    """`options:` of a replay model."""

    model_config = ConfigDict(extra="forbid")

    #: The labeled JSONL file whose recorded answers and costs this model replays.
    dataset: str = Field(min_length=1)
    #: Simulated latency of each answer.
    latency_ms: float = Field(default=0, ge=0)


class ReplayProvider(Provider):
    protocol = "openai"
    Options = ReplayOptions

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if not isinstance(config.options.get("dataset"), str) or not config.options.get("dataset"):
            raise ConfigError(
                f"model {config.name!r}: the replay provider needs options.dataset (a labeled JSONL file)"
            )
        options = ReplayOptions.model_validate(config.options)
        self.dataset = options.dataset
        self.latency = options.latency_ms / 1000.0
        self._index: dict[str, Candidate] | None = None
        self.calls = 0
        self.misses = 0

    def _load(self) -> dict[str, Candidate]:
        if self._index is None:
            from thrifty.routing.labeled import load_labeled

            model = self.config.upstream_model
            index: dict[str, Candidate] = {}
            for ex in load_labeled(self.dataset):
                cand = ex.candidates.get(model)
                if cand is not None:
                    index.setdefault(ex.text.strip(), cand)
            if not index:
                raise ValueError(
                    f"model {self.config.name!r}: {self.dataset} has no recorded answers of {model!r}"
                )
            self._index = index
        return self._index

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def ready(self) -> bool:
        return self._index is not None

    def stats(self) -> dict[str, float]:
        return {"replay_calls": float(self.calls), "replay_misses": float(self.misses)}

    def lookup(self, body: dict[str, Any]) -> Candidate:

        cand = self._load().get(request_text(body).strip())
        if cand is None:
            self.misses += 1
            raise UpstreamError(
                404,
                f"replay model {self.config.upstream_model!r}: this prompt is not in {self.dataset}",
                error_type="not_found_error",
            )
        return cand

    def recorded_cost(self, body: dict[str, Any]) -> Decimal | None:
        """The recorded cost of this model answering `body`, or None if it was not recorded:
        the exact counterfactual when a router sends the request elsewhere."""

        cand = self._load().get(request_text(body).strip())
        return None if cand is None else cand.cost

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        from thrifty.routing.datasets import count_tokens

        cand = self.lookup(body)
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        text = cand.response or ""
        usage = Usage(
            input_tokens=count_tokens(request_text(body, user_only=False)),
            output_tokens=count_tokens(text) if text else 0,
            estimated=True,
        )
        model = self.config.upstream_model
        rid = "chatcmpl-replay-" + uuid.uuid4().hex[:16]
        created = int(time.time())
        out = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": _usage_json(usage),
        }
        reply = Reply(status=200, body=out, usage=usage, served_model=self.name, provider="replay",
                      cost=Decimal(cand.cost))
        if body.get("stream"):  # the same answer as the chunks a live stream sends, ending complete
            reply.stream = EventStream.replay(replay_events(out, "openai", "chat", body.get("stream_options")))
            reply.stream.usage, reply.body = usage, None
        return reply

def _usage_json(u: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }

