"""Embedding calls to a configured model: an OpenAI-compatible `/embeddings` endpoint, or
the shipped MiniLM (`thrifty.embed`) for a `provider: local` model that names it.

An upstream that answers in a shape its API does not document (a count of vectors that is
not the count of inputs, a vector that is not a list of numbers, no usage) is a 502 that
says so: never a half-filled answer, never a row priced on a guess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thrifty.config import DEFAULT_BASE_URLS, ModelConfig
from thrifty.errors import BadRequest, UpstreamError
from thrifty.ledger.tokens import count_text
from thrifty.providers.transport import post

__all__ = ["LOCAL_EMBEDDING_MODELS", "Embedded", "embed", "is_local_embedding_model", "split_tokens"]

#: Names a `provider: local` model may give to mean the shipped MiniLM (384 dimensions).
LOCAL_EMBEDDING_MODELS = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"})


def is_local_embedding_model(cfg: ModelConfig) -> bool:
    return cfg.provider == "local" and cfg.upstream_model.lower() in LOCAL_EMBEDDING_MODELS


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    #: Input tokens the call is billed for, in all.
    tokens: int
    #: The same, attributed to each input (summing to `tokens`).
    tokens_each: list[int]
    #: Whether `tokens` was counted here rather than reported by the upstream.
    estimated: bool


def split_tokens(total: int, inputs: Sequence[str | list[int]]) -> list[int]:
    """`total` tokens attributed to `inputs` in proportion to their own counts (largest
    remainder), so a later cache hit on one input saves what that input cost."""
    weights = [len(x) if isinstance(x, list) else max(count_text(x), 1) for x in inputs]
    whole = sum(weights) or 1
    shares = [total * w // whole for w in weights]
    order = sorted(range(len(inputs)), key=lambda i: -(total * weights[i] % whole))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _bad_shape(cfg: ModelConfig, why: str) -> UpstreamError:
    return UpstreamError(502, f"model {cfg.name!r} answered the embeddings request in a shape its API does not "
                         f"document: {why}", error_type="api_error")


async def embed(cfg: ModelConfig, protocol: str, inputs: list[str | list[int]], dimensions: int | None,
                user: str | None = None) -> Embedded:
    """Embed `inputs` with the model of `cfg` (whose provider speaks `protocol`)."""
    if is_local_embedding_model(cfg):
        return await _local(cfg, inputs, dimensions)
    if protocol != "openai":
        raise BadRequest(f"model {cfg.name!r} speaks {protocol}, which has no embeddings endpoint; "
                         "configure an OpenAI-compatible or local embedding model", "model")
    body: dict[str, Any] = {"model": cfg.upstream_model, "input": inputs, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    if user:
        body["user"] = user
    key = cfg.api_key()
    if cfg.provider == "azure":
        from thrifty.providers.azure import azure_request

        url, headers, _ = azure_request(cfg, "embeddings")
    else:
        url = (cfg.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/") + "/embeddings"
        headers = {"Content-Type": "application/json", **cfg.headers}
        if key:
            headers["Authorization"] = f"Bearer {key}"
    answer = await post(cfg.name, url, body, headers, streaming=False, timeout=cfg.timeout,
                        connect_timeout=cfg.connect_timeout, secret=key)
    assert isinstance(answer, dict)
    data = answer.get("data")
    if not isinstance(data, list) or len(data) != len(inputs):
        count = len(data) if isinstance(data, list) else "no list of"
        raise _bad_shape(cfg, f"{count} vectors for {len(inputs)} inputs")
    vectors: list[list[float] | None] = [None] * len(inputs)
    for position, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise _bad_shape(cfg, f"data[{position}] has no 'embedding' list")
        index = item.get("index", position)
        vector = item["embedding"]
        if not isinstance(index, int) or not 0 <= index < len(inputs) or vectors[index] is not None:
            raise _bad_shape(cfg, f"data[{position}] has index {index!r}")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
            raise _bad_shape(cfg, f"data[{position}].embedding holds something other than numbers")
        vectors[index] = [float(x) for x in vector]
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise _bad_shape(cfg, "no usage.prompt_tokens, so the call cannot be billed")
    return Embedded([v for v in vectors if v is not None], tokens, split_tokens(tokens, inputs), False)


async def _local(cfg: ModelConfig, inputs: list[str | list[int]], dimensions: int | None) -> Embedded:
    from thrifty.embed import DIM, shared_embedder

    texts: list[str] = []
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise BadRequest(f"input[{i}]: model {cfg.name!r} (local MiniLM) embeds text, not token ids", "input")
        texts.append(item)
    if dimensions is not None and dimensions != DIM:
        raise BadRequest(f"model {cfg.name!r} (local MiniLM) has {DIM} dimensions; 'dimensions' cannot change that",
                         "dimensions")

    def run() -> list[list[float]]:
        return [[float(x) for x in row] for row in shared_embedder().embed(texts)]

    vectors = await asyncio.to_thread(run)
    each = [count_text(t) for t in texts]
    return Embedded(vectors, sum(each), each, True)
