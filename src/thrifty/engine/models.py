"""The models `thrifty serve` offers when it has no configuration at all.

The first answer a new user sees comes from the default: SmolLM2-135M-Instruct, an
instruction-tuned model with a chat template, so "What is the capital of France?" gets
"Paris" rather than a base model's continuation of the text. Gemma 3 270M (a base model)
stays available by name when its package is installed.
"""

from __future__ import annotations

from thrifty.config import ModelConfig
from thrifty.engine.model_files import BUILTIN_MODELS, DEFAULT_BUILTIN, GEMMA3

DEFAULT_LOCAL_MODEL = DEFAULT_BUILTIN


def default_local_model_config() -> ModelConfig:
    """The default bundled model (SmolLM2-135M-Instruct) served by the embedded engine, free of charge."""
    return local_model_config(DEFAULT_LOCAL_MODEL)


def local_model_config(name: str) -> ModelConfig:
    """A bundled model by name (`smollm2-135m-instruct`, `gemma-3-270m`) as a local model."""
    if name not in BUILTIN_MODELS:
        raise ValueError(f"{name!r} is not a bundled model; known: {', '.join(BUILTIN_MODELS)}")
    return ModelConfig(name=name, provider="local", model=name)


def zero_config_models() -> list[ModelConfig]:
    """The default model first, then Gemma 3 270M if its package is installed."""
    models = [default_local_model_config()]
    if BUILTIN_MODELS[GEMMA3].installed():
        models.append(local_model_config(GEMMA3))
    return models
