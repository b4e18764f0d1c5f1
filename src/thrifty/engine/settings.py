"""The `engine:` config section: sizes and switches of the embedded local engine.

A local model's `options:` override these for that model, so two local models can have
different context sizes.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: KV cells shared by all sequences (active and prefix-cached); also the longest prompt+output.
    n_ctx: int = Field(default=8192, ge=256)
    #: Sequences decoded together in one batch.
    max_active: int = Field(default=8, ge=1, le=64)
    #: Requests allowed to wait for a free sequence; one more is refused with 429.
    max_queue: int = Field(default=32, ge=0)
    #: Prompt tokens prefilled between two decode steps while other sequences are decoding
    #: (so a long new prompt slows running streams down instead of stalling them).
    prefill_per_step: int = Field(default=32, ge=1)
    #: Prompt tokens prefilled per step when nothing is decoding.
    n_batch: int = Field(default=512, ge=1)
    #: Prefill works in chunks aligned to multiples of this many positions. At 32 or fewer,
    #: llama.cpp's CPU attention does not depend on where a sequence's cells sit in the
    #: shared KV cache, so a sequence prefilled next to others, or after a cached prefix,
    #: gets bit-identical KV to one prefilled alone (and the same greedy tokens).
    prefill_chunk: int = Field(default=32, ge=1, le=512)
    #: CPU threads for llama.cpp; 0 = every core this process may use but one (see default_threads).
    n_threads: int = Field(default=0, ge=0)
    #: Finished sequences kept for prefix reuse (each holds one sequence id).
    prefix_cache_slots: int = Field(default=16, ge=0, le=200)
    #: KV cells the prefix cache may keep (0 = whatever active sequences leave free).
    prefix_cache_tokens: int = Field(default=0, ge=0)
    #: Shortest shared prefix worth reusing.
    prefix_min_tokens: int = Field(default=16, ge=1)
    #: Prompt-lookup speculative decoding: draft tokens from n-grams of the prompt, verified
    #: in one batch. Off by default: it pays where decoding is memory-bound (GPU, big models);
    #: on a CPU whose cores are the bottleneck every drafted row costs a full row of compute.
    prompt_lookup: bool = False
    lookup_ngram_max: int = Field(default=3, ge=1, le=8)
    lookup_ngram_min: int = Field(default=2, ge=1, le=8)
    lookup_draft_tokens: int = Field(default=8, ge=1, le=32)
    #: Default output cap when a request gives no max_tokens.
    default_max_tokens: int = Field(default=256, ge=1)
    #: Routing sends elsewhere when this many requests wait (see Engine.should_spill); 0 = never.
    spill_queue_depth: int = Field(default=4, ge=0)
    #: plain: render chat messages as text (base models); chat: the GGUF's chat template;
    #: auto: the chat template when the GGUF has one and is not a base model.
    template: Literal["auto", "plain", "chat"] = "auto"
    #: A template to use instead of the GGUF's own: a llama.cpp built-in name (chatml, gemma,
    #: llama3, mistral-v7, ...). Setting it implies template: chat.
    chat_template: str = ""

    def threads(self) -> int:
        return self.n_threads or default_threads()


def default_threads() -> int:
    """Every core this process may run on but one, which the gateway keeps for itself.

    The event loop, HTTP parsing, streaming and the ledger need a core while the engine
    decodes, and llama.cpp's worker threads wait for each other at a barrier after every
    operation: when one of them loses its core, the whole step waits. On 2 cores, 2 threads
    made a single stream through `thrifty serve` about 9x slower than 1 thread on a busy
    machine (`benchmarks/engine.py --gateway`), so the engine takes what the machine can spare.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


def engine_settings(section: dict[str, Any] | None, options: dict[str, Any] | None = None) -> EngineSettings:
    """Settings from the `engine:` section with a local model's `options:` on top."""
    data = dict(section or {})
    data.update({k: v for k, v in (options or {}).items() if k in EngineSettings.model_fields})
    return EngineSettings.model_validate(data)
