"""Cascades that read the answers (`thrifty.routing.cascade_eval`), on recorded answers of real models.

Targets (settings chosen on train only, out of fold; the test split is read once, at the end):
- RouterBench MBPP test: >= 100% of gpt-4-1106-preview's accuracy at <= 30% of its cost.
- RouteLLM GSM8K (the fixed 80/20 split of `benchmarks/routing.py`): >= 95% of GPT-4's accuracy
  at <= 50% of its cost.

Each candidate setting (which cheap models a stage asks, with or without the prompt-only prior)
is trained with 5-fold out-of-fold scorers on train and calibrated there: the cheapest accept
threshold reaching the target within the cost cap. Among the candidates that reach it, the one
that does so in the largest share of bootstrap resamples of train is kept (the most likely to
hold on fresh data); when none does, the one with the best quality within the cap. Every answer
a stage asks for is paid for, whether it is served or not.

Code answers run in the sandbox (thrifty.evals.sandbox); what they returned is cached under
--out (signals_cache.pkl) so that a re-run takes seconds.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thrifty.routing.cascade_eval import (
    CascadeArtifact,
    CascadeConfig,
    SignalCache,
    evaluate_cascade,
    train_cascade,
)
from thrifty.routing.datasets import convert_routellm_gsm8k, convert_routerbench
from thrifty.routing.evaluate import Report, plot, render_table
from thrifty.routing.features import Embed, FeatureSpec, featurize
from thrifty.routing.labeled import Example, split_fixed
from thrifty.routing.policy import Point

GPT4 = "gpt-4-1106-preview"
GPT35 = "gpt-3.5-turbo-1106"
MIXTRAL_RB = "mistralai/mixtral-8x7b-chat"
CODELLAMA = "meta/code-llama-instruct-34b-chat"
CLAUDE_I = "claude-instant-v1"
WIZARD = "WizardLM/WizardLM-13B-V1.2"
MISTRAL7 = "mistralai/mistral-7b-chat"
YI = "zero-one-ai/Yi-34B-Chat"
MIXTRAL_RL = "mistralai/Mixtral-8x7B-Instruct-v0.1"

#: The cheap pools tried on MBPP (one stage, then gpt-4), cheapest models first.
MBPP_POOLS: tuple[tuple[str, ...], ...] = (
    (GPT35,),
    (GPT35, MIXTRAL_RB, CODELLAMA),
    (GPT35, CLAUDE_I, MIXTRAL_RB, CODELLAMA),
    (GPT35, MIXTRAL_RB, CODELLAMA, WIZARD, MISTRAL7),
    (GPT35, CLAUDE_I, MIXTRAL_RB, CODELLAMA, YI, WIZARD, MISTRAL7),
)


@dataclass
class Candidate:
    label: str
    art: CascadeArtifact

    @property
    def key(self) -> tuple[bool, float, float]:
        cal = self.art.calibration
        assert cal is not None
        if cal.met:
            return (True, cal.reach_probability or 0.0, -cal.cost_per_call)
        return (False, cal.quality, -cal.cost_per_call)


def _cache(out: Path) -> tuple[SignalCache, Path]:
    path = out / "signals_cache.pkl"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f), path  # noqa: S301 - written by this script
    return {}, path


def _short(m: str) -> str:
    return m.split("/")[-1]


def _choose(
    train_set: Sequence[Example],
    configs: Sequence[CascadeConfig],
    target: float,
    max_cost: float,
    cache: SignalCache,
    x_prompt: np.ndarray,
    embed: Embed,
) -> Candidate:
    print(f"  candidates, out of fold on train ({len(train_set)} prompts; target {target:.0%} at <= {max_cost:.0%}):")
    cands: list[Candidate] = []
    for cfg in configs:
        for prior in (False, True):
            art, _ = train_cascade(
                train_set,
                cfg,
                reference=GPT4,
                target=target,
                max_cost=max_cost,
                cache=cache,
                prior=prior,
                embed=embed,
                x_prompt=x_prompt,
            )
            cal = art.calibration
            assert cal is not None
            label = " + ".join(_short(m) for m in cfg.stages[0]) + (" | prompt prior" if prior else "")
            cands.append(Candidate(label, art))
            print(
                f"    {label:78s} accept >= {cal.knob:<6g} {cal.quality / cal.best_quality:6.1%} of {GPT4} "
                f"at {cal.cost_per_call / cal.best_cost_per_call:5.1%} of its cost, "
                f"{'meets it' if cal.met else 'out of reach'} in {cal.reach_probability or 0:.0%} of resamples"
            )
    best = max(cands, key=lambda c: c.key)
    print(f"  chosen on train: {best.label}")
    return best


def _report(name: str, rep: Report, best: Candidate, target: float, max_cost: float, out: Path) -> bool:
    from rich.console import Console

    Console(width=150).print(render_table(rep))
    plot(rep, out / f"{name}_cascade_curve.png", title=f"{name}: cascade on answer signals vs single models (test)")
    ref = rep.singles[GPT4]
    pt = rep.calibrated
    assert pt is not None
    ok = pt.quality >= target * ref.quality - 1e-12 and pt.cost <= max_cost * ref.cost + 1e-12
    shares = ", ".join(f"{_short(m)} {s:.1%}" for m, s in pt.share.items() if s > 0)
    print(
        f"  test ({rep.n} prompts), train-chosen setting (accept >= {pt.knob:g}): accuracy {pt.quality:.4f} "
        f"= {pt.quality / ref.quality:.1%} of {GPT4}'s {ref.quality:.4f}, cost ${pt.cost:.4f} = "
        f"{pt.cost / ref.cost:.1%} of its ${ref.cost:.4f} (every answer asked for counted); served by: {shares}"
    )
    print(
        f"  target (>= {target:.0%} of {GPT4}'s accuracy at <= {max_cost:.0%} of its cost): "
        f"{'MET' if ok else 'NOT MET'}"
    )
    hind: Point | None = rep.reach.get(target)
    print(
        "  cheapest point of the test curve reaching it (hindsight threshold, not a result): "
        + ("not reached" if hind is None else f"{hind.cost / ref.cost:.1%} of the cost at accept >= {hind.knob:g}")
    )
    return ok


def mbpp_signals(data: Path, embed: Embed, out: Path) -> bool:
    print("\n== Cascade on answer signals: RouterBench MBPP (cheap models at once, then gpt-4) ==")
    tr = convert_routerbench(data / "routerbench" / "mbpp_train.csv").examples
    te = convert_routerbench(data / "routerbench" / "mbpp_test.csv").examples
    cache, path = _cache(out)
    configs = [CascadeConfig([list(p), [GPT4]], "code") for p in MBPP_POOLS]
    x_prompt = featurize([e.text for e in tr], FeatureSpec(), embed)
    try:
        best = _choose(tr, configs, 1.0, 0.3, cache, x_prompt, embed)
        rep = evaluate_cascade(best.art, te, cache=cache, embed=embed)
    finally:
        with path.open("wb") as f:
            pickle.dump(cache, f)
    best.art.save(out / "mbpp_cascade.pkl")
    return _report("mbpp", rep, best, 1.0, 0.3, out)


def gsm8k_signals(data: Path, embed: Embed, out: Path) -> bool:
    print("\n== Cascade on answer signals: RouteLLM GSM8K (Mixtral, then GPT-4), fixed 80/20 split ==")
    conv = convert_routellm_gsm8k(data / "routellm_gsm8k_responses.csv")
    assert not conv.problems, conv.report()
    tr, te = split_fixed(conv.examples, 0.8, salt="gsm8k-80-20")
    cache: SignalCache = {}
    x_prompt = featurize([e.text for e in tr], FeatureSpec(), embed)
    best = _choose(tr, [CascadeConfig([[MIXTRAL_RL], [GPT4]], "numeric")], 0.95, 0.5, cache, x_prompt, embed)
    rep = evaluate_cascade(best.art, te, cache=cache, embed=embed)
    best.art.save(out / "gsm8k_cascade.pkl")
    return _report("gsm8k", rep, best, 0.95, 0.5, out)


def e2e_cascade(data: Path, out: Path) -> bool:
    """`thrifty serve` with the MBPP cascade (trained by `mbpp_signals`) and replay models over MBPP
    test: the ledger's total cost (served answers plus every unserved one as side cost) and the
    served accuracy must equal the offline evaluation of the same artifact."""
    import asyncio
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    from decimal import Decimal

    from routing_e2e import _free_port, _send_all, _wait_ready  # type: ignore[import-not-found]

    from thrifty.routing.cascade_eval import load_cascade
    from thrifty.routing.labeled import write_labeled

    art_path = out / "mbpp_cascade.pkl"
    if not art_path.exists():
        raise SystemExit("run the MBPP cascade first (benchmarks/routing.py --only signals-mbpp)")
    art = load_cascade(art_path)
    examples = convert_routerbench(data / "routerbench" / "mbpp_test.csv").examples
    dataset = out / "mbpp_test_cascade.jsonl"
    write_labeled(examples, dataset)
    cache, _ = _cache(out)
    offline = evaluate_cascade(art, examples, cache=cache)
    assert offline.calibrated is not None
    ledger = out / "e2e_cascade_ledger.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    port = _free_port()
    lines = [f"server: {{host: 127.0.0.1, port: {port}}}", f'store: "sqlite:///{ledger.resolve()}"', "models:"]
    lines += [
        f'  - {{name: "{m}", provider: replay, max_retries: 0, options: {{dataset: "{dataset.resolve()}"}}}}'
        for m in art.config.models
    ]
    lines += ["route:", f'  default: "{GPT4}"', f'  cascade: {{signals: "{art_path.resolve()}"}}']
    config = out / "e2e_cascade.yaml"
    config.write_text("\n".join(lines) + "\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    with (out / "e2e_cascade_serve.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config), "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            _wait_ready(port, proc)
            t0 = time.perf_counter()
            # Two at a time: each request runs its answers in the sandbox, on a 2-core machine.
            replies = asyncio.run(_send_all(port, [ex.text for ex in examples], concurrency=2))
            elapsed = time.perf_counter() - t0
            time.sleep(1.0)  # the ledger writer flushes every 0.25 s
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    quality, mismatched = [], 0
    for ex, rep in zip(examples, replies, strict=True):
        cand = ex.candidates[rep["model"]]
        mismatched += cand.response != rep["choices"][0]["message"]["content"]
        quality.append(cand.quality)
    with sqlite3.connect(ledger) as db:
        n, cost_pico, saved_pico = db.execute(
            "SELECT COUNT(*), SUM(cost_pico), SUM(saved_pico) FROM requests"
        ).fetchone()
    pico = Decimal(10) ** 12
    ledger_cost = float(Decimal(cost_pico or 0) / pico)
    acc = float(np.mean(quality))
    ref = offline.singles[GPT4]
    print(f"\n== End to end: thrifty serve + MBPP cascade on answer signals + replay models ({n} requests, {elapsed:.1f}s) ==")
    print(
        f"ledger total cost ${ledger_cost:.6f} ({ledger_cost / ref.cost:.1%} of {GPT4}'s) vs offline "
        f"${offline.calibrated.cost:.6f}; served accuracy {acc:.4f} vs offline {offline.calibrated.quality:.4f}; "
        f"route saving in the ledger ${float(Decimal(saved_pico or 0) / pico):.6f}; answers not matching the recording: {mismatched}"
    )
    ok = (
        n == len(examples)
        and abs(ledger_cost - offline.calibrated.cost) < 1e-6
        and abs(acc - offline.calibrated.quality) < 1e-12
        and mismatched == 0
    )
    print(f"end-to-end equals offline: {'YES' if ok else 'NO'}")
    return ok
