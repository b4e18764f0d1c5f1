"""A provider that answers every request with its last user turn, in the OpenAI shape."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thrifty.protocol.view import last_user_text
from thrifty.providers.base import Provider
from thrifty.types import Context, Reply, Usage


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Put before every answer.
    prefix: str = "echo: "
    #: USD billed per request.
    cost: float = Field(default=0.0, ge=0)


class EchoProvider(Provider):
    protocol = "openai"
    Options = EchoOptions

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        options = EchoOptions.model_validate(self.config.options)
        text = options.prefix + last_user_text(body)
        answer = {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": 0,
            "model": self.config.upstream_model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return Reply(body=answer, usage=Usage(input_tokens=1, output_tokens=1), served_model=self.config.upstream_model,
                     provider="echo", cost=Decimal(str(options.cost)))
