"""The engine's features, measured: the prefix cache's time to first token, prompt lookup.

1. Time to first token with a ~500-token system prompt in the prefix cache vs not.
2. Prompt-lookup decoding speed-up on a copy-heavy task (quoting a given text).

The engine's raw speed against llama.cpp's own limit is `benchmarks/engine.py`.
The machine may be shared, so the script prints the load average before and after;
the ratios are measured side by side in the same run.

    .venv/bin/python benchmarks/engine_features.py [--model NAME] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from tqdm import tqdm

from thrifty.engine.model_files import resolve_model_path
from thrifty.engine.runtime import LocalEngine
from thrifty.engine.sampling import SamplingParams
from thrifty.engine.scheduler import Done
from thrifty.engine.settings import EngineSettings

WORDS = ["policy", "customer", "refund", "order", "shipping", "warranty", "account", "invoice", "support", "product", "return", "exchange", "delivery", "payment", "address", "receipt", "discount", "subscription", "service", "agent", "ticket"]

PASSAGE = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion, the members agreed to increase spending on public libraries by ten percent, "
    "to repair the bridge over the river before winter, and to hire two more teachers for the "
    "primary school. The proposal to build a new parking garage was postponed until the spring, "
    "when a study of traffic in the town centre will be finished. The chair thanked everyone for "
    "their patience and closed the meeting at nine in the evening."
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma-3-270m", help="bundled model name or GGUF path")
    ap.add_argument("--tokens", type=int, default=128, help="output tokens of the copy task")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = the engine's default)")
    args = ap.parse_args()

    load_before = os.getloadavg()
    threads = EngineSettings(n_threads=args.threads).threads()
    settings = EngineSettings(n_ctx=4096, max_active=8, max_queue=64, n_threads=threads, prefix_cache_slots=8)
    path = str(resolve_model_path(args.model))
    engine = LocalEngine.load(args.model, settings)
    steps = tqdm(total=2, desc="engine features", unit="step")

    # 1. TTFT with a 500-token system prompt cached vs not
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
        engine.engine.clear_cache()
        cold = engine.generate(q1, SamplingParams(max_tokens=1, temperature=0.0))
        warm = engine.generate(q2, SamplingParams(max_tokens=1, temperature=0.0))
        assert cold.ttft is not None and warm.ttft is not None
        miss_ttft.append(cold.ttft)
        hit_ttft.append(warm.ttft)
    steps.update()

    # 2. prompt lookup on a copy-heavy task
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
    model_bytes = engine.model.size_bytes
    engine.close()
    steps.close()
    load_after = os.getloadavg()

    on, off = outputs[True], outputs[False]
    t_on, t_off = min(timings[True]), min(timings[False])
    print()
    print(f"model: {path} ({model_bytes / 1e6:.0f} MB weights), threads={threads}, cores={os.cpu_count()}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f}, after: {load_after[0]:.2f} {load_after[1]:.2f}")
    print()
    miss, hit = statistics.median(miss_ttft), statistics.median(hit_ttft)
    print(f"1. time to first token, {system_tokens}-token system prompt (median of 3):")
    print(f"   not cached: {miss * 1000:.0f} ms, cached: {hit * 1000:.0f} ms, speed-up {miss / hit:.1f}x (target >= 5x)")
    same = "same text" if on.text == off.text else "TEXT DIFFERS"
    print(f"2. prompt lookup on a copy task ({off.output_tokens} tokens, {same}):")
    print(
        f"   off: {off.output_tokens / t_off:.1f} tok/s, on: {on.output_tokens / t_on:.1f} tok/s, "
        f"speed-up {t_off / t_on:.2f}x; drafts accepted {on.accepted}/{on.drafted}"
    )


if __name__ == "__main__":
    main()
