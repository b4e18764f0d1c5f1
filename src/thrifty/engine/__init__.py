"""Local inference: llama.cpp with continuous batching, a prefix cache and prompt-lookup drafts.

Importing this package does not load llama.cpp; `LocalEngine.load` (thrifty.engine.runtime)
does, when a local model starts.
"""

from __future__ import annotations

from thrifty.config import ModelConfig
from thrifty.engine.settings import EngineSettings, engine_settings

DEFAULT_LOCAL_MODEL = "gemma-3-270m"


def default_local_model_config() -> ModelConfig:
    """The model `thrifty serve` offers with no configuration: the bundled Gemma 3 270M."""
    return ModelConfig(name=DEFAULT_LOCAL_MODEL, provider="local", model="default")


__all__ = ["DEFAULT_LOCAL_MODEL", "EngineSettings", "default_local_model_config", "engine_settings"]
