"""Which class serves each `provider:` kind of a configured model."""

from __future__ import annotations

import importlib
from typing import Any

from thrifty.config import Config, ModelConfig
from thrifty.providers.base import Provider

#: provider kind -> "module:Class". The local engine and replay provider load lazily so
#: that a gateway without them does not import llama.cpp or datasets.
KINDS: dict[str, str] = {
    "openai": "thrifty.providers.openai:OpenAIProvider",
    "anthropic": "thrifty.providers.anthropic:AnthropicProvider",
    "local": "thrifty.providers.local:LocalProvider",
    "replay": "thrifty.providers.replay:ReplayProvider",
}


def make_provider(config: ModelConfig, root: Config | None = None) -> Provider:
    """The provider for one configured model; `root` gives the local engine its `engine:` section."""
    module_name, _, cls_name = KINDS[config.provider].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), cls_name)
    if config.provider == "local" and root is not None:
        provider: Provider = cls(config, engine_section=root.engine)
        return provider
    made: Provider = cls(config)
    return made
