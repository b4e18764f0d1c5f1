"""The embedded engine against the limit of the library it runs on, and the machine's bounds.

For each model (both bundled ones by default) the script runs, side by side and interleaved
(bare, engine, engine, bare, ... so that a change in the machine's load hits both sides):

- **the bare loop**: a minimal greedy decode loop over llama.cpp's low-level API, written
  here with nothing else in it: one `llama_batch` holding every sequence's next token, one
  `llama_decode`, argmax of each logits row, stop at end-of-generation or the token budget.
  Same GGUF, same context settings as the engine (n_ctx, unified KV cache), same threads.
  It runs in a child process of its own: two llama.cpp contexts in one process, driven from
  two threads, slow each other down (their worker threads spin against each other).
- **the engine**: the same prompts through thrifty's scheduler (`LocalEngine`, no HTTP).

at batch 1 (one request) and batch 8 (eight concurrent requests); each side's tokens/s
counts every output token from submission to the last one (prefill included, the same short
prompts on both sides). The headline is the engine's tokens/s as a fraction of the bare
loop's, per round and their median; the same fraction per CPU-second each process used is
printed too, since on a shared machine it moves less with the neighbours' load.

It also prints the CPU (model, SIMD features, what llama.cpp was built to use), and the
machine's bounds for one decode step of B sequences:

- memory: B x bandwidth / weight bytes (bandwidth measured here with a large numpy copy on
  one thread; the weights are read once per step whatever B is);
- compute: llama.cpp's own arithmetic rate, measured on a 256-token prefill (where it is
  compute-bound), divided by 2 x parameters FLOPs per generated token.

With `--ttft`, the time to first token of the 30 smoke questions (`examples/evals/local-smoke.jsonl`)
through zero-config `thrifty serve`, asked one at a time.

With `--gateway`, it measures the thread-count default: `thrifty serve` with the default
(every core but one) and with every core, both running, loaded in alternation through HTTP
with 1 stream (the idle gateway) and 8 concurrent streams; tokens/s and time to first token.

    .venv/bin/python benchmarks/engine.py                       # both models, default threads
    .venv/bin/python benchmarks/engine.py --gateway             # and the thread-count study
    .venv/bin/python benchmarks/engine.py --model smollm2-135m-instruct --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.engine.model_files import BUILTIN_MODELS, DEFAULT_BUILTIN, GEMMA3, SMOLLM2, resolve_model_path
from thrifty.engine.runtime import LocalEngine
from thrifty.engine.sampling import SamplingParams
from thrifty.engine.scheduler import Done
from thrifty.engine.settings import EngineSettings, default_threads

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

#: CPU flags that decide which llama.cpp kernels run (x86 and Arm).
SIMD_FLAGS = [
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve", "sve2",
]  # fmt: skip


# -- the machine ---------------------------------------------------------------------------


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of SIMD_FLAGS it has (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    return model, [f for f in SIMD_FLAGS if f in flags]


def bandwidth_gbs(size_mb: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth of one thread: bytes read + written per second by a large array copy."""
    src = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


# -- the bare loop (runs in a child process) ------------------------------------------------


class BareLoop:
    """A minimal greedy decode loop over llama.cpp's low-level API: no scheduler, no HTTP."""

    def __init__(self, path: str, threads: int, n_ctx: int, n_seq: int, capacity: int) -> None:
        import llama_cpp as lib

        from thrifty.engine.llama import cpu_has_amx

        self.lib = lib
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # as the engine: no load chatter
        lib.llama_backend_init()
        mparams = lib.llama_model_default_params()
        if cpu_has_amx():  # the engine avoids llama.cpp's AMX kernels (they crash); so does this loop
            mparams.use_extra_bufts = False
        self.model = lib.llama_model_load_from_file(path.encode(), mparams)
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = capacity
        cparams.n_seq_max = n_seq
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.kv_unified = True  # as the engine's context
        cparams.swa_full = True
        cparams.no_perf = True
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        self.mem = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(capacity, 0, 1)
        self.capacity = capacity

    def tokenize(self, text: str) -> list[int]:
        import ctypes

        data = text.encode()
        arr = (ctypes.c_int32 * (len(data) + 8))()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), arr, len(arr), True, False)
        return list(arr[:n])

    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(entries)

    def _argmax(self, row: int) -> int:
        ptr = self.lib.llama_get_logits_ith(self.ctx, row)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def generate(self, prompts: list[list[int]], max_tokens: int) -> tuple[list[list[int]], float]:
        """Greedy outputs of every prompt decoded together, and the seconds it took."""
        lib = self.lib
        lib.llama_memory_clear(self.mem, True)
        t = time.perf_counter()
        entries = [(tok, j, s, j == len(p) - 1) for s, p in enumerate(prompts) for j, tok in enumerate(p)]
        rows, at = [], 0
        for p in prompts:
            at += len(p)
            rows.append(at - 1)
        self._fill(entries)
        if lib.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed on the prompts")
        outputs: list[list[int]] = [[] for _ in prompts]
        live = list(range(len(prompts)))
        nexts = {s: self._argmax(rows[i]) for i, s in enumerate(live)}
        while True:
            still = []
            for s in live:
                tok = nexts[s]
                outputs[s].append(tok)
                if not lib.llama_vocab_is_eog(self.vocab, tok) and len(outputs[s]) < max_tokens:
                    still.append(s)
            live = still
            if not live:
                break
            self._fill([(outputs[s][-1], len(prompts[s]) + len(outputs[s]) - 1, s, True) for s in live])
            if lib.llama_decode(self.ctx, self.batch) != 0:
                raise RuntimeError("llama_decode failed")
            nexts = {s: self._argmax(i) for i, s in enumerate(live)}
        return outputs, time.perf_counter() - t

    def prefill_seconds(self, tokens: list[int]) -> float:
        """Seconds of one llama_decode over `tokens` (logits for the last only), best of 2."""
        best = float("inf")
        for _ in range(2):
            self.lib.llama_memory_clear(self.mem, True)
            self._fill([(tok, j, 0, j == len(tokens) - 1) for j, tok in enumerate(tokens)])
            t = time.perf_counter()
            if self.lib.llama_decode(self.ctx, self.batch) != 0:
                raise RuntimeError("llama_decode failed on the prefill")
            best = min(best, time.perf_counter() - t)
        return best


def _bare_role(path: str, threads: int, n_ctx: int, n_seq: int, capacity: int) -> None:
    """Serve the parent's requests, one JSON line each way."""
    loop = BareLoop(path, threads, n_ctx, n_seq, capacity)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if job["cmd"] == "generate":
            cpu = time.process_time()
            outputs, seconds = loop.generate(job["prompts"], job["max_tokens"])
            cpu = time.process_time() - cpu
            print(json.dumps({"outputs": outputs, "seconds": seconds, "cpu": cpu}), flush=True)
        elif job["cmd"] == "prefill":
            print(json.dumps({"seconds": loop.prefill_seconds(job["tokens"])}), flush=True)
        else:
            break


class BareChild:
    def __init__(self, path: str, threads: int, n_ctx: int, n_seq: int, capacity: int) -> None:
        cmd = [sys.executable, __file__, "--role", "bare", "--model", path, "--threads", str(threads),
               "--n-ctx", str(n_ctx), "--n-seq", str(n_seq), "--capacity", str(capacity)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the bare loop exited ({self.proc.wait()})")
        return dict(json.loads(line))

    def ask(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# -- the engine ----------------------------------------------------------------------------


def engine_generate(engine: LocalEngine, prompts: list[list[int]], max_tokens: int) -> tuple[list[Done], float]:
    """All prompts submitted at once through the scheduler; their results and the seconds."""
    results: list[Done | None] = [None] * len(prompts)
    finished = threading.Event()
    lock = threading.Lock()

    def sink_for(i: int) -> Any:
        def sink(event: object) -> None:
            if isinstance(event, Done):
                with lock:
                    results[i] = event
                    if all(r is not None for r in results):
                        finished.set()

        return sink

    engine.engine.clear_cache()  # no prefix reuse between rounds: the bare loop has none
    time.sleep(0.05)
    t = time.perf_counter()
    for i, p in enumerate(prompts):
        engine.engine.submit(p, SamplingParams(max_tokens=max_tokens, temperature=0.0, prompt_lookup=False), sink_for(i))
    finished.wait()
    seconds = time.perf_counter() - t
    return [r for r in results if r is not None], seconds


def bench_model(name: str, threads: int, rounds: int, tokens: int, bw: float) -> dict[str, Any]:
    settings = EngineSettings(n_threads=threads)  # the zero-config engine, but for the thread count
    path = str(resolve_model_path(name))
    engine = LocalEngine.load(name, settings)
    capacity = engine.model.capacity
    bare = BareChild(path, threads, settings.n_ctx, 8, max(capacity, 512))
    prompts = [engine.model.tokenize(s) for s in STORY_STARTS]
    in_decode = [0.0]  # seconds the engine thread spent inside llama_decode
    plain_decode = engine.model.decode

    def timed_decode() -> int:
        t = time.perf_counter()
        try:
            return plain_decode()
        finally:
            in_decode[0] += time.perf_counter() - t

    engine.model.decode = timed_decode  # type: ignore[method-assign]
    engine_seconds: dict[int, list[float]] = {}
    decode_seconds: dict[int, list[float]] = {}
    rates: dict[tuple[str, int], list[float]] = {}
    per_cpu: dict[tuple[str, int], list[float]] = {}  # tokens per CPU-second of the process
    same: dict[int, bool] = {}
    engine_generate(engine, prompts[:1], 8)  # warm both sides up
    bare.ask({"cmd": "generate", "prompts": prompts[:1], "max_tokens": 8})
    for r in range(rounds):
        for batch in (1, 8):
            ps = prompts[:batch]
            order = ("bare", "engine") if (r + batch) % 2 else ("engine", "bare")
            for side in order:
                if side == "bare":
                    out = bare.ask({"cmd": "generate", "prompts": ps, "max_tokens": tokens})
                    bare_tokens: list[list[int]] = out["outputs"]
                    rates.setdefault(("bare", batch), []).append(sum(map(len, bare_tokens)) / out["seconds"])
                    per_cpu.setdefault(("bare", batch), []).append(sum(map(len, bare_tokens)) / out["cpu"])
                else:
                    cpu, in_decode[0] = time.process_time(), 0.0
                    dones, seconds = engine_generate(engine, ps, tokens)
                    cpu = time.process_time() - cpu
                    engine_seconds.setdefault(batch, []).append(seconds)
                    decode_seconds.setdefault(batch, []).append(in_decode[0])
                    eng_tokens = [d.token_ids for d in dones]
                    rates.setdefault(("engine", batch), []).append(sum(map(len, eng_tokens)) / seconds)
                    per_cpu.setdefault(("engine", batch), []).append(sum(map(len, eng_tokens)) / cpu)
            same[batch] = same.get(batch, True) and bare_tokens == eng_tokens
            print(f"  {name} round {r + 1} batch {batch}: bare {rates[('bare', batch)][-1]:.1f} tok/s, "
                  f"engine {rates[('engine', batch)][-1]:.1f} tok/s", file=sys.stderr, flush=True)  # fmt: skip
    # compute bound: llama.cpp's arithmetic rate on a 256-token prefill
    text = " ".join(STORY_STARTS * 8)
    prefill = engine.model.tokenize(text)[:256]
    prefill_s = bare.ask({"cmd": "prefill", "tokens": prefill})["seconds"]
    n_params, n_vocab = engine.model.n_params, engine.model.n_vocab
    n_embd = int(engine.model.lib.llama_model_n_embd(engine.model.model))
    # In a prefill only the last token's logits are computed; the (tied) embedding table is a
    # lookup for the others. A generated token pays every weight once: 2 FLOPs per parameter.
    prefill_flops = len(prefill) * 2 * (n_params - n_vocab * n_embd)
    flops_rate = prefill_flops / prefill_s
    result = {
        "model": name,
        "path": path,
        "weights_mb": engine.model.size_bytes / 1e6,
        "params_m": n_params / 1e6,
        "rates": {f"{side}@{b}": v for (side, b), v in rates.items()},
        "per_cpu": {f"{side}@{b}": v for (side, b), v in per_cpu.items()},
        "decode_share": {b: sum(decode_seconds[b]) / sum(engine_seconds[b]) for b in engine_seconds},
        "same_tokens": same,
        "prefill_tokens_s": len(prefill) / prefill_s,
        "gflops": flops_rate / 1e9,
        "compute_bound": flops_rate / (2 * n_params),
        "memory_bound_1": bw * 1e9 / engine.model.size_bytes,
    }
    bare.close()
    engine.close()
    return result


def _ratio(res: dict[str, Any], batch: int, key: str = "rates") -> tuple[float, list[float]]:
    eng, bare = res[key][f"engine@{batch}"], res[key][f"bare@{batch}"]
    per_round = [e / b for e, b in zip(eng, bare, strict=True)]
    return statistics.median(per_round), per_round


# -- the gateway and the thread count ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_gateway(model: str, threads: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    config = workdir / f"threads-{threads}.yaml"
    config.write_text(
        f"store: sqlite:///{workdir}/ledger-{threads}.db\n"
        f"engine: {{n_threads: {threads}}}\n"
        f"models:\n  - {{name: {model}, provider: local, model: {model}}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config), "--port", str(port),
         "--log-level", "warning"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


async def _wait_ready(url: str, timeout: float = 120) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")


async def _stream(session: Any, url: str, model: str, prompt: str, tokens: int) -> tuple[int, float, float]:
    """One streamed chat completion: output tokens, time to first content, total seconds."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    t = time.perf_counter()
    first = None
    out = 0
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - t
            if chunk.get("usage"):
                out = int(chunk["usage"]["completion_tokens"])
    total = time.perf_counter() - t
    return out, first if first is not None else total, total


async def _load(url: str, model: str, concurrency: int, tokens: int) -> tuple[float, float]:
    """Tokens/s of `concurrency` concurrent streams, and their median time to first token."""
    import aiohttp

    prompts = [f"Write a short story about {s.lower()}" for s in STORY_STARTS[:concurrency]]
    async with aiohttp.ClientSession() as session:
        t = time.perf_counter()
        results = await asyncio.gather(*(_stream(session, url, model, p, tokens) for p in prompts))
        seconds = time.perf_counter() - t
    return sum(r[0] for r in results) / seconds, statistics.median(r[1] for r in results)


def gateway_threads(model: str, options: list[int], rounds: int, tokens: int) -> dict[int, dict[str, list[float]]]:
    out: dict[int, dict[str, list[float]]] = {n: {} for n in options}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {n: _start_gateway(model, n, Path(tmp)) for n in options}
        try:
            for _, url in procs.values():
                asyncio.run(_wait_ready(url))
            for _, url in procs.values():  # warm-up
                asyncio.run(_load(url, model, 1, 8))
            for r in range(rounds):
                order = options if r % 2 == 0 else list(reversed(options))
                for conc in (1, 8):
                    for n in order:
                        tps, ttft = asyncio.run(_load(procs[n][1], model, conc, tokens))
                        out[n].setdefault(f"tps@{conc}", []).append(tps)
                        out[n].setdefault(f"ttft@{conc}", []).append(ttft)
                        print(f"  gateway {model} threads={n} round {r + 1} streams={conc}: {tps:.1f} tok/s, "
                              f"first token {ttft * 1000:.0f} ms", file=sys.stderr, flush=True)  # fmt: skip
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
    return out


def zero_config_ttft(set_path: Path, tokens: int = 4) -> list[float]:
    """Time to first token of every question of the smoke set, one at a time, through
    `thrifty serve` with no config (the default model), in a fresh directory."""
    questions = [json.loads(line)["request"]["messages"][0]["content"] for line in set_path.open()]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "THRIFTY_CONFIG"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "thrifty.cli", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(_wait_ready(url))

            async def ask_all() -> list[float]:
                import aiohttp

                out = []
                async with aiohttp.ClientSession() as session:
                    await _stream(session, url, DEFAULT_BUILTIN, "Hello", tokens)  # warm-up
                    for q in questions:
                        out.append((await _stream(session, url, DEFAULT_BUILTIN, q, tokens))[1])
                return out

            return asyncio.run(ask_all())
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="bundled model name or GGUF path (repeatable; default: both bundled)")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = the engine's default)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per batch size")
    ap.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    ap.add_argument("--gateway", action="store_true", help="also measure the default thread count vs all cores through thrifty serve")
    ap.add_argument("--gateway-tokens", type=int, default=16, help="output tokens per stream in the gateway study")
    ap.add_argument("--ttft", action="store_true", help="also time the first token of the smoke questions via zero-config serve")
    ap.add_argument("--role", choices=["bare"], help=argparse.SUPPRESS)
    ap.add_argument("--n-ctx", type=int, default=8192, help=argparse.SUPPRESS)
    ap.add_argument("--n-seq", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--capacity", type=int, default=512, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "bare":
        return _bare_role(args.model[0], args.threads, args.n_ctx, args.n_seq, args.capacity)

    models = args.model or [m for m in (SMOLLM2, GEMMA3) if BUILTIN_MODELS[m].installed()]
    threads = EngineSettings(n_threads=args.threads).threads()
    load_before = os.getloadavg()
    cpu, simd = cpu_description()
    import llama_cpp

    system_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    bw = bandwidth_gbs()
    results = [bench_model(m, threads, args.rounds, args.tokens, bw) for m in models]
    gateway: dict[int, dict[str, list[float]]] = {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.gateway and cores > 1:
        gateway = gateway_threads(models[0], [default_threads(), cores], args.rounds, args.gateway_tokens)
    smoke = Path(__file__).resolve().parents[1] / "examples" / "evals" / "local-smoke.jsonl"
    ttfts = zero_config_ttft(smoke) if args.ttft else []
    load_after = os.getloadavg()

    print()
    print(f"CPU: {cpu}; {cores} cores; SIMD: {' '.join(simd) or 'none found'}")
    print(f"llama.cpp: {system_info}")
    print(f"llama.cpp threads: {threads}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          "(a shared machine: the ratios below are taken side by side, interleaved)")  # fmt: skip
    print(f"memory bandwidth (one thread, numpy copy): {bw:.1f} GB/s")
    for res in results:
        print()
        print(f"== {res['model']}: {res['weights_mb']:.0f} MB of weights, {res['params_m']:.0f} M parameters ==")
        print(f"   compute: llama.cpp prefills {res['prefill_tokens_s']:.0f} tok/s = {res['gflops']:.1f} GFLOP/s "
              f"-> {res['compute_bound']:.0f} generated tok/s at most, any batch")  # fmt: skip
        for batch in (1, 8):
            mem = batch * res["memory_bound_1"]
            bound = min(mem, res["compute_bound"])
            kind = "memory" if mem < res["compute_bound"] else "compute"
            bare = statistics.median(res["rates"][f"bare@{batch}"])
            eng = statistics.median(res["rates"][f"engine@{batch}"])
            ratio, per_round = _ratio(res, batch)
            print(f"   batch {batch}: bound {bound:.0f} tok/s ({kind}; memory {mem:.0f}); "
                  f"bare loop {bare:.1f} tok/s = {bare / bound:.2f} of the bound")  # fmt: skip
            rounds = ", ".join(f"{x:.3f}" for x in per_round)
            same = "same tokens" if res["same_tokens"][batch] else "tokens differ"
            print(f"            engine {eng:.1f} tok/s = {ratio:.3f} of the bare loop "
                  f"(median of rounds: {rounds}; target >= 0.9; {same})")  # fmt: skip
            print(f"            the engine's wall time inside llama_decode: {res['decode_share'][batch]:.3f}")
            cpu_ratio, cpu_rounds = _ratio(res, batch, "per_cpu")
            print(f"            per CPU-second of each process (steadier on a shared machine): "
                  f"{cpu_ratio:.3f} ({', '.join(f'{x:.3f}' for x in cpu_rounds)})")  # fmt: skip
        b1 = statistics.median(res["rates"]["engine@1"])
        b8 = statistics.median(res["rates"]["engine@8"])
        print(f"   batching: 8 concurrent / 1 alone through the engine = {b8 / b1:.2f}x "
              f"(bare loop {statistics.median(res['rates']['bare@8']) / statistics.median(res['rates']['bare@1']):.2f}x)")
    if gateway:
        print()
        print(f"== thread count through thrifty serve ({models[0]}, {args.gateway_tokens} tokens per stream, median of {args.rounds}) ==")
        for n, figures in gateway.items():
            print(f"   n_threads={n}: 1 stream {statistics.median(figures['tps@1']):.1f} tok/s, first token "
                  f"{statistics.median(figures['ttft@1']) * 1000:.0f} ms; 8 streams "
                  f"{statistics.median(figures['tps@8']):.1f} tok/s, first token "
                  f"{statistics.median(figures['ttft@8']) * 1000:.0f} ms")  # fmt: skip

    if ttfts:
        ttfts.sort()
        print()
        print(f"== zero-config thrifty serve, {DEFAULT_BUILTIN}: first token of the {len(ttfts)} smoke questions, one at a time ==")
        print(f"   median {statistics.median(ttfts) * 1000:.0f} ms, p90 {ttfts[int(0.9 * (len(ttfts) - 1))] * 1000:.0f} ms, "
              f"max {ttfts[-1] * 1000:.0f} ms; target <= 500 ms")  # fmt: skip


if __name__ == "__main__":
    main()
