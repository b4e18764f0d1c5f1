"""Cascades that read the answers (`thrifty.routing.cascade_eval`), on recorded answers of real models.

Targets (settings chosen on train only, out of fold; the test split is read once, at the end):
- every RouterBench task under `routerbench/` with a `<task>_train.csv` and a `<task>_test.csv`
  (MBPP here; a held-out file of the same format gets the same run): >= 100% of the strongest
  model's test accuracy at <= 30% of its cost.
- RouteLLM GSM8K (the fixed 80/20 split of `benchmarks/routing.py`): >= 95% of GPT-4's accuracy
  at <= 50% of its cost.

Nothing is hand-picked per dataset: `thrifty.routing.cascade_search.search_cascade` (what
`thrifty router train --cascade auto` runs) picks the reference (the best model on train), the
candidate cheap stages (the best 1, 2, 3, 4, 5, 7 models on train that fit the cost cap), with or
without the prompt-only prior, the scorer family (logistic regression or gradient-boosted trees,
by out-of-fold log loss), and the accept threshold (the one meeting the target and the cap in the
most bootstrap resamples of train); the candidate kept is the likeliest to meet them. Every answer
a stage asks for is paid for, whether it is served or not.

Code answers run in the sandbox (thrifty.evals.sandbox); what they returned is cached under
--out (signals_cache.pkl) so that a re-run takes seconds.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from thrifty.routing.cascade_eval import SignalCache, evaluate_cascade
from thrifty.routing.cascade_search import SearchResult, search_cascade
from thrifty.routing.datasets import convert_routellm_gsm8k, convert_routerbench
from thrifty.routing.evaluate import Report, plot, render_table
from thrifty.routing.features import Embed
from thrifty.routing.labeled import Example, split_fixed
from thrifty.routing.policy import Point

GPT4 = "gpt-4-1106-preview"


def _cache(out: Path) -> tuple[SignalCache, Path]:
    path = out / "signals_cache.pkl"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f), path  # noqa: S301 - written by this script
    return {}, path


def _short(m: str) -> str:
    return m.split("/")[-1]


def _report(name: str, rep: Report, found: SearchResult, target: float, max_cost: float, out: Path) -> bool:
    from rich.console import Console

    Console(width=150).print(render_table(rep))
    plot(rep, out / f"{name}_cascade_curve.png", title=f"{name}: cascade on answer signals vs single models (test)")
    ref_name = found.reference
    ref = rep.singles[ref_name]
    pt = rep.calibrated
    assert pt is not None
    ok = pt.quality >= target * ref.quality - 1e-12 and pt.cost <= max_cost * ref.cost + 1e-12
    shares = ", ".join(f"{_short(m)} {s:.1%}" for m, s in pt.share.items() if s > 0)
    print(
        f"  test ({rep.n} prompts), train-chosen setting (accept >= {pt.knob:g}): accuracy {pt.quality:.4f} "
        f"= {pt.quality / ref.quality:.1%} of {_short(ref_name)}'s {ref.quality:.4f}, cost ${pt.cost:.4f} = "
        f"{pt.cost / ref.cost:.1%} of its ${ref.cost:.4f} (every answer asked for counted); served by: {shares}"
    )
    print(
        f"  [{name}] target (>= {target:.0%} of {_short(ref_name)}'s accuracy at <= {max_cost:.0%} of its cost): "
        f"{'MET' if ok else 'NOT MET'}"
    )
    hind: Point | None = rep.reach.get(target)
    print(
        "  cheapest point of the test curve reaching it (hindsight threshold, not a result): "
        + ("not reached" if hind is None else f"{hind.cost / ref.cost:.1%} of the cost at accept >= {hind.knob:g}")
    )
    return ok


def oracle_line(examples: list[Example], cheap: list[str], reference: str, target: float) -> str:
    """The bound no scorer can beat: escalate exactly the prompts on which every cheap answer is wrong."""
    from thrifty.routing.learned import label_matrices

    q, c = label_matrices(examples, [*cheap, reference])
    any_good = q[:, :-1].max(axis=1) > 0
    quality = np.where(any_good, 1.0, q[:, -1]).mean()
    cost = c[:, :-1].sum() + c[~any_good, -1].sum()
    return (
        f"  oracle bound (perfect knowledge of which cheap answers are right; escalate only when none is): "
        f"{quality / q[:, -1].mean():.1%} of {_short(reference)}'s accuracy at {cost / c[:, -1].sum():.1%} of its cost "
        f"(target {target:.0%})"
    )


def routerbench_tasks(data: Path) -> list[str]:
    """The RouterBench tasks with both a train and a test file."""
    root = data / "routerbench"
    return sorted(
        p.name[: -len("_train.csv")]
        for p in root.glob("*_train.csv")
        if (root / p.name.replace("_train.csv", "_test.csv")).exists()
    )


def routerbench_signals(data: Path, embed: Embed, out: Path, task: str) -> bool:
    print(f"\n== Cascade on answer signals: RouterBench {task} (cheap models at once, then the strongest) ==")
    tr = convert_routerbench(data / "routerbench" / f"{task}_train.csv").examples
    te = convert_routerbench(data / "routerbench" / f"{task}_test.csv").examples
    cache, path = _cache(out)
    print(f"  candidates, out of fold on train ({len(tr)} prompts; target 100% of the strongest at <= 30% of its cost):")
    try:
        found = search_cascade(tr, target=1.0, max_cost=0.3, cache=cache, embed=embed, log=print)
        rep = evaluate_cascade(found.best.art, te, cache=cache, embed=embed)
    finally:
        with path.open("wb") as f:
            pickle.dump(cache, f)
    found.best.art.save(out / f"{task}_cascade.pkl")
    ok = _report(task, rep, found, 1.0, 0.3, out)
    print(oracle_line(te, found.best.art.config.stages[0], found.reference, 1.0))
    return ok


def mbpp_signals(data: Path, embed: Embed, out: Path) -> bool:
    return routerbench_signals(data, embed, out, "mbpp")


def gsm8k_signals(data: Path, embed: Embed, out: Path) -> bool:
    print("\n== Cascade on answer signals: RouteLLM GSM8K (Mixtral, then GPT-4), fixed 80/20 split ==")
    conv = convert_routellm_gsm8k(data / "routellm_gsm8k_responses.csv")
    assert not conv.problems, conv.report()
    tr, te = split_fixed(conv.examples, 0.8, salt="gsm8k-80-20")
    cache: SignalCache = {}
    print(f"  candidates, out of fold on train ({len(tr)} prompts; target 95% of GPT-4 at <= 50% of its cost):")
    found = search_cascade(tr, target=0.95, max_cost=0.5, reference=GPT4, cache=cache, embed=embed, log=print)
    rep = evaluate_cascade(found.best.art, te, cache=cache, embed=embed)
    found.best.art.save(out / "gsm8k_cascade.pkl")
    ok = _report("gsm8k", rep, found, 0.95, 0.5, out)
    print(oracle_line(te, found.best.art.config.stages[0], GPT4, 0.95))
    return ok


def gsm8k_splits(data: Path, out: Path, n_splits: int = 10) -> None:
    """How often the same procedure meets the GSM8K target on other 80/20 splits: one test split of
    278 questions moves the figures by a point or two either way (one question is 0.4% of GPT-4's
    accuracy). Without the prompt prior (it needs each split's embeddings), so a little weaker."""
    print(f"\n== GSM8K cascade, the same procedure on {n_splits} other random 80/20 splits (no prompt prior) ==")
    conv = convert_routellm_gsm8k(data / "routellm_gsm8k_responses.csv")
    cache: SignalCache = {}
    met = 0
    rows = []
    for i in range(n_splits):
        tr, te = split_fixed(conv.examples, 0.8, salt=f"gsm8k-split-{i}")
        found = search_cascade(tr, target=0.95, max_cost=0.5, reference=GPT4, cache=cache, priors=(False,))
        rep = evaluate_cascade(found.best.art, te, cache=cache)
        ref, pt = rep.singles[GPT4], rep.calibrated
        assert pt is not None
        q, c = pt.quality / ref.quality, pt.cost / ref.cost
        ok = q >= 0.95 - 1e-12 and c <= 0.5 + 1e-12
        met += ok
        rows.append((q, c))
        print(f"  split {i}: test {rep.n}: {q:.1%} of GPT-4's accuracy at {c:.1%} of its cost: {'met' if ok else 'missed'}")
    qs, cs = np.array(rows).T
    print(
        f"  mean {qs.mean():.1%} of GPT-4's accuracy at {cs.mean():.1%} of its cost; target met on {met} of {n_splits} splits"
    )


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
