"""Benchmark of the embedded engine: prints the four figures of the engine issue in one run.

1. 8 concurrent requests x 128 output tokens through the engine vs the same 8 one after
   another through llama-cpp-python's own `Llama.create_completion` (total tokens/s), each
   side in a process of its own.
2. Time to first token with a ~500-token system prompt in the prefix cache vs not.
3. Single-sequence decode tokens/s as a fraction of the memory-bandwidth bound
   (model bytes read per token / bandwidth measured here with a large numpy copy).
4. Prompt-lookup decoding speed-up on a copy-heavy task (quoting a given text).

The machine may be shared, so the script also prints the load average before and after;
the ratios are measured side by side in the same run.

    .venv/bin/python benchmarks/engine.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from thrifty.engine.model_files import resolve_model_path
from thrifty.engine.runtime import LocalEngine
from thrifty.engine.sampling import SamplingParams
from thrifty.engine.scheduler import Done
from thrifty.engine.settings import EngineSettings

STORY_STARTS = [
    "The old lighthouse keeper climbed the stairs one last time and",
    "In the year 2150, the first city on Mars",
    "The recipe for my grandmother's apple pie begins with",
    "When the river flooded the valley, the farmers",
    "The detective looked at the broken window and said",
    "A short history of the printing press: in 1440,",
    "The robot opened its eyes for the first time and",
    "Deep in the forest there was a village where",
]

WORDS = ["policy", "customer", "refund", "order", "shipping", "warranty", "account", "invoice", "support", "product", "return", "exchange", "delivery", "payment", "address", "receipt", "discount", "subscription", "service", "agent", "ticket"]

PASSAGE = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion, the members agreed to increase spending on public libraries by ten percent, "
    "to repair the bridge over the river before winter, and to hire two more teachers for the "
    "primary school. The proposal to build a new parking garage was postponed until the spring, "
    "when a study of traffic in the town centre will be finished. The chair thanked everyone for "
    "their patience and closed the meeting at nine in the evening."
)


def bandwidth_gbs(size_mb: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth from copying a large array (bytes read + written per second)."""
    src = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def reference_llama(llama_class: Any, path: str, threads: int) -> Any:
    """llama-cpp-python's own `Llama`, with the weight buffers the engine uses (no AMX where
    the CPU has it: llama.cpp's AMX kernels crash on this model), so both sides run the same kernels."""
    import llama_cpp.llama_cpp as llama_cpp  # the module `Llama` takes its defaults from

    from thrifty.engine.llama import cpu_has_amx

    defaults = llama_cpp.llama_model_default_params

    def params() -> Any:
        p = defaults()
        if cpu_has_amx():
            p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = params
    try:
        return llama_class(model_path=path, n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
    finally:
        llama_cpp.llama_model_default_params = defaults


def sequential_reference(path: str, threads: int, tokens: int, count: int) -> tuple[int, float]:
    """Output tokens and seconds of `count` create_completion calls in turn, run in a child
    process: two llama.cpp contexts driven from different threads of one process slow each
    other down (the engine lost a quarter of its throughput after a create_completion run in
    the same process), and neither a user's llama-cpp-python nor thrifty runs like that."""
    out = subprocess.run(
        [sys.executable, __file__, "--role", "reference", "--model", path, "--threads", str(threads),
         "--tokens", str(tokens), "--concurrency", str(count)],
        capture_output=True, text=True, check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return int(data["tokens"]), float(data["seconds"])


def _reference_role(path: str, threads: int, tokens: int, count: int) -> None:
    from llama_cpp import Llama

    reference = reference_llama(Llama, path, threads)
    done = 0
    t = time.perf_counter()
    for text in STORY_STARTS[:count]:
        out: Any = reference.create_completion(text, max_tokens=tokens, temperature=0.0)
        done += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t
    reference.close()
    print(json.dumps({"tokens": done, "seconds": seconds}))


def run_concurrent(engine: LocalEngine, prompts: list[list[int]], params: list[SamplingParams]) -> list[Done]:
    results: list[Done | None] = [None] * len(prompts)
    done = threading.Event()
    lock = threading.Lock()

    def sink_for(i: int) -> Any:
        def sink(event: object) -> None:
            if isinstance(event, Done):
                with lock:
                    results[i] = event
                    if all(r is not None for r in results):
                        done.set()

        return sink

    for i, (p, sp) in enumerate(zip(prompts, params, strict=True)):
        engine.engine.submit(p, sp, sink_for(i))
    done.wait()
    return [r for r in results if r is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="GGUF path or 'default' (Gemma 3 270M Q4_K_M)")
    ap.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = the engine's default)")
    ap.add_argument("--role", choices=["reference"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "reference":
        return _reference_role(args.model, args.threads, args.tokens, args.concurrency)

    load_before = os.getloadavg()
    threads = EngineSettings(n_threads=args.threads).threads()
    settings = EngineSettings(
        n_ctx=4096, max_active=args.concurrency, max_queue=64, n_threads=threads, prefix_cache_slots=8
    )
    steps = tqdm(total=7, desc="engine benchmark", unit="step")
    bw = bandwidth_gbs()
    path = str(resolve_model_path(args.model))
    steps.update()

    # 1. throughput: 8 sequential create_completion calls (in a process of their own) vs the
    # same 8 concurrent through the engine
    steps.set_postfix_str("sequential create_completion")
    load_seq = os.getloadavg()[0]
    seq_tokens, seq_time = sequential_reference(path, threads, args.tokens, args.concurrency)
    steps.update()
    steps.set_postfix_str("loading the engine")
    engine = LocalEngine.load(args.model, settings)
    steps.set_postfix_str("concurrent engine")
    prompts = [engine.model.tokenize(s) for s in STORY_STARTS[: args.concurrency]]
    engine.engine.clear_cache()
    load_bat = os.getloadavg()[0]
    t = time.perf_counter()
    results = run_concurrent(
        engine,
        prompts,
        [SamplingParams(max_tokens=args.tokens, temperature=0.0, prompt_lookup=False) for _ in prompts],
    )
    batch_time = time.perf_counter() - t
    batch_tokens = sum(r.output_tokens for r in results)
    steps.update()

    # 2. TTFT with a 500-token system prompt cached vs not
    steps.set_postfix_str("time to first token")
    rng = np.random.default_rng(0)
    miss_ttft: list[float] = []
    hit_ttft: list[float] = []
    system_tokens = 0
    for trial in range(3):
        words = " ".join(rng.choice(WORDS, size=490))
        system = f"Rules {trial}: {words}\n\n"
        system_tokens = len(engine.model.tokenize(system))
        q1 = engine.model.tokenize(system + "User: where is my order?\nAssistant:")
        q2 = engine.model.tokenize(system + "User: can I get a refund?\nAssistant:")
        one = SamplingParams(max_tokens=1, temperature=0.0)
        engine.engine.clear_cache()
        cold = engine.generate(q1, one)
        warm = engine.generate(q2, SamplingParams(max_tokens=1, temperature=0.0))
        assert cold.ttft is not None and warm.ttft is not None
        miss_ttft.append(cold.ttft)
        hit_ttft.append(warm.ttft)
    steps.update()

    # 3. single-sequence decode vs the bandwidth bound
    steps.set_postfix_str("single-sequence decode")
    single = engine.generate(
        prompts[0], SamplingParams(max_tokens=args.tokens, temperature=0.0, prompt_lookup=False)
    )
    t = time.perf_counter()
    single = engine.generate(
        engine.model.tokenize(STORY_STARTS[1]),
        SamplingParams(max_tokens=args.tokens, temperature=0.0, prompt_lookup=False),
    )
    single_total = time.perf_counter() - t
    decode_tps = (single.output_tokens - 1) / (single_total - (single.ttft or 0.0))
    model_bytes = engine.model.size_bytes
    bound_tps = bw * 1e9 / model_bytes
    steps.update()

    # 4. prompt lookup on a copy-heavy task
    steps.set_postfix_str("prompt lookup")
    copy_prompt = engine.model.tokenize(
        "Repeat the text exactly.\n\nText: The cat sat on the mat.\nRepeat: The cat sat on the mat.\n\n"
        f"Text: {PASSAGE}\nRepeat:"
    )
    timings: dict[bool, list[float]] = {False: [], True: []}
    outputs: dict[bool, Done] = {}
    for _ in range(2):
        for lookup in (False, True):
            engine.engine.clear_cache()
            t = time.perf_counter()
            outputs[lookup] = engine.generate(
                copy_prompt, SamplingParams(max_tokens=args.tokens, temperature=0.0, prompt_lookup=lookup)
            )
            timings[lookup].append(time.perf_counter() - t)
    steps.update()
    engine.close()
    steps.update()
    steps.close()
    load_after = os.getloadavg()

    on, off = outputs[True], outputs[False]
    t_on, t_off = min(timings[True]), min(timings[False])
    print()
    print(f"model: {path} ({model_bytes / 1e6:.0f} MB weights), threads={threads}, cores={os.cpu_count()}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f}, after: {load_after[0]:.2f} {load_after[1]:.2f}")
    print()
    seq_tps = seq_tokens / seq_time
    bat_tps = batch_tokens / batch_time
    print(f"1. throughput, {args.concurrency} x {args.tokens} tokens:")
    print(f"   sequential create_completion: {seq_tokens} tokens in {seq_time:.2f}s = {seq_tps:.1f} tok/s")
    print(f"   engine, concurrent batched:   {batch_tokens} tokens in {batch_time:.2f}s = {bat_tps:.1f} tok/s")
    print(f"   speed-up: {bat_tps / seq_tps:.2f}x (target >= 3x); 1-min load at start: {load_seq:.1f} vs {load_bat:.1f}")
    miss, hit = statistics.median(miss_ttft), statistics.median(hit_ttft)
    print(f"2. time to first token, {system_tokens}-token system prompt (median of 3):")
    print(f"   not cached: {miss * 1000:.0f} ms, cached: {hit * 1000:.0f} ms, speed-up {miss / hit:.1f}x (target >= 5x)")
    print("3. single-sequence decode:")
    print(
        f"   {decode_tps:.1f} tok/s; bandwidth {bw:.1f} GB/s / {model_bytes / 1e6:.0f} MB per token = "
        f"{bound_tps:.1f} tok/s bound; fraction {decode_tps / bound_tps:.2f}"
    )
    same = "same text" if on.text == off.text else "TEXT DIFFERS"
    print(f"4. prompt lookup on a copy task ({off.output_tokens} tokens, {same}):")
    print(
        f"   off: {off.output_tokens / t_off:.1f} tok/s, on: {on.output_tokens / t_on:.1f} tok/s, "
        f"speed-up {t_off / t_on:.2f}x; drafts accepted {on.accepted}/{on.drafted}"
    )


if __name__ == "__main__":
    main()
