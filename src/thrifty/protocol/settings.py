"""The `translation:` config section: what translation between protocols may not guess.

Anthropic Messages requires an output cap (`max_tokens`) and OpenAI chat completions does
not, so an OpenAI request without one that is served by an Anthropic model gets
`default_max_tokens`. It is a setting, not a hidden constant, and the reply says when it
was applied (`X-Thrifty-Default-Max-Tokens`):

    translation:
      default_max_tokens: 4096
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TranslationSettings"]


class TranslationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_max_tokens: int = Field(default=4096, ge=1)
