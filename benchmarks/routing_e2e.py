"""End to end: `thrifty serve` with the learned router and replay providers over MBPP test.

Every RouterBench model is a `replay` model answering from mbpp_test (its recorded answer at
its recorded cost); the route stage loads the MBPP router trained by benchmarks/routing.py.
Each test prompt is sent to the gateway over HTTP as a request for gpt-4-1106-preview; the
ledger's total cost and the accuracy of the answers that came back must equal the offline
evaluation of the same router setting on the same prompts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

from thrifty.routing.evaluate import evaluate
from thrifty.routing.labeled import load_labeled
from thrifty.routing.learned import load_artifact

GPT4 = "gpt-4-1106-preview"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    out: Path, dataset: Path, router: Path, models: list[str], policy: str, knob: float, port: int
) -> Path:
    lines = [
        f"server: {{host: 127.0.0.1, port: {port}}}",
        f'store: "sqlite:///{(out / "e2e_ledger.db").resolve()}"',
        "models:",
    ]
    for m in models:
        lines.append(
            f'  - {{name: "{m}", provider: replay, max_retries: 0, options: {{dataset: "{dataset.resolve()}"}}}}'
        )
    lines += [
        "route:",
        f'  router: "{router.resolve()}"',
        f'  default: "{GPT4}"',
        f"  policy: {policy}",
        f"  knob: {knob!r}",
    ]
    path = out / "e2e_thrifty.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _send_all(port: int, prompts: list[str], concurrency: int = 8) -> list[dict]:  # type: ignore[type-arg]
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(prompt: str) -> dict:  # type: ignore[type-arg]
            body = {"model": GPT4, "messages": [{"role": "user", "content": prompt}]}
            async with sem, session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
                data = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"gateway answered {r.status}: {data}")
                return data  # type: ignore[no-any-return]

        return await asyncio.gather(*(one(p) for p in prompts))


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:  # type: ignore[type-arg]
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"thrifty serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("thrifty serve did not become ready")


def run_e2e(out: Path) -> bool:
    dataset, router_path = out / "mbpp_test.jsonl", out / "mbpp_router.pkl"
    if not dataset.exists() or not router_path.exists():
        raise SystemExit("run the MBPP part first (benchmarks/routing.py --only mbpp)")
    art = load_artifact(router_path)
    examples = load_labeled(dataset)
    cal = art.calibration
    assert cal is not None
    offline = evaluate(art, examples)
    assert offline.calibrated is not None
    ledger = out / "e2e_ledger.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    port = _free_port()
    config = write_config(out, dataset, router_path, list(examples[0].candidates), cal.policy, cal.knob, port)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    log = (out / "e2e_serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_ready(port, proc)
        t0 = time.perf_counter()
        replies = asyncio.run(_send_all(port, [ex.text for ex in examples]))
        elapsed = time.perf_counter() - t0
        time.sleep(1.0)  # the ledger writer flushes every 0.25 s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # Accuracy of what came back: the recorded correctness of the answer each reply carries.
    served_quality = []
    mismatched = 0
    for ex, rep in zip(examples, replies, strict=True):
        model, text = rep["model"], rep["choices"][0]["message"]["content"]
        cand = ex.candidates[model]
        if cand.response != text:
            mismatched += 1
        served_quality.append(cand.quality)
    with sqlite3.connect(ledger) as db:
        rows = db.execute(
            "SELECT COUNT(*), SUM(cost_pico), SUM(counterfactual_pico), SUM(saved_pico) FROM requests"
        ).fetchone()
        by_model = db.execute(
            "SELECT served_model, COUNT(*) FROM requests GROUP BY served_model ORDER BY 2 DESC"
        ).fetchall()
    n, cost_pico, cf_pico, saved_pico = rows
    pico = Decimal(10) ** 12
    ledger_cost = Decimal(cost_pico or 0) / pico
    offline_cost = sum(
        (ex.candidates[m].cost for ex, m in zip(examples, [r["model"] for r in replies], strict=True)),
        Decimal(0),
    )
    served_acc = float(np.mean(served_quality))
    print(
        f"\n== End to end: thrifty serve + router + replay providers, MBPP test ({len(examples)} prompts, {elapsed:.1f}s) =="
    )
    print(f"ledger rows {n}; served by: " + ", ".join(f"{m} {c}" for m, c in by_model))
    print(
        f"ledger total cost ${ledger_cost:.6f} vs offline evaluation ${offline.calibrated.cost:.6f} "
        f"(recorded costs of the served answers ${offline_cost:.6f})"
    )
    print(
        f"served accuracy {served_acc:.4f} vs offline evaluation {offline.calibrated.quality:.4f}; "
        f"answers not matching the recording: {mismatched}"
    )
    print(
        f"ledger counterfactual ${Decimal(cf_pico or 0) / pico:.6f} (GPT-4's recorded cost ${offline.singles[GPT4].cost:.6f}), "
        f"route saving ${Decimal(saved_pico or 0) / pico:.6f}"
    )
    ok = (
        n == len(examples)
        and abs(float(ledger_cost) - offline.calibrated.cost) < 1e-9
        and abs(served_acc - offline.calibrated.quality) < 1e-12
        and mismatched == 0
    )
    print(f"end-to-end equals offline: {'YES' if ok else 'NO'}")
    return ok
