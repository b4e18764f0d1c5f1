"""The model `thrifty serve` offers when it has no configuration at all."""

from __future__ import annotations

from thrifty.config import ModelConfig

DEFAULT_LOCAL_MODEL = "gemma-3-270m"


def default_local_model_config() -> ModelConfig:
    """The bundled Gemma 3 270M (base, Q4_K_M) served by the embedded engine, free of charge."""
    return ModelConfig(name=DEFAULT_LOCAL_MODEL, provider="local", model="default")
