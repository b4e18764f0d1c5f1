"""Local inference: llama.cpp with continuous batching, a prefix cache and prompt-lookup drafts.

Importing this package does not load llama.cpp; `LocalEngine.load` (thrifty.engine.runtime)
does, when a local model starts.
"""

from __future__ import annotations

from thrifty.engine.models import (
    DEFAULT_LOCAL_MODEL,
    default_local_model_config,
    local_model_config,
    zero_config_models,
)
from thrifty.engine.settings import EngineSettings, engine_settings

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "EngineSettings",
    "default_local_model_config",
    "engine_settings",
    "local_model_config",
    "zero_config_models",
]
