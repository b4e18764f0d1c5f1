#!/usr/bin/env python
"""How `thrifty audit` scales: time and peak memory on synthetic logs of growing size.

Writes OpenAI-format JSONL logs (thrifty.audit.synth: Zipf-popular prompts, retries after
429s, truncated answers, one bad line in 10,000) of each size, then audits each in a fresh
process and prints wall time, rows per second, the process's peak RSS and the time of the
near-duplicate search (embedding the sample, the verifier on each candidate pair). Bounded
memory shows as a flat peak RSS while the log grows 10x.

Usage: python benchmarks/audit_scale.py [--sizes 100000,1000000] [--near-dup-sample 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from thrifty.audit.run import audit_log
from thrifty.audit.waste import AuditSettings
path, sample = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
a = audit_log(path, settings=AuditSettings(near_dup_sample=sample), progress=True)
print(json.dumps({
    "rows": a.rows, "bad": a.bad_lines, "seconds": time.perf_counter() - t,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "exact_dups": a.waste["exact_duplicates"]["requests"], "retries": a.waste["retries"]["requests"],
    "near_status": a.waste["near_duplicates"]["status"], "cost": a.total_cost, "finish_s": a.elapsed_s,
    "near_checked": a.waste["near_duplicates"].get("candidates", 0), "near_found": a.waste["near_duplicates"].get("matches", 0),
}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--near-dup-sample", type=int, default=2000)
    ap.add_argument("--keep", help="write the logs here and keep them (default: a temp dir, removed)")
    args = ap.parse_args()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sys.path.insert(0, src)
    from thrifty.audit.synth import write

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="thrifty-audit-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        path = workdir / f"log-{n}.jsonl"
        t = time.perf_counter()
        lines = write(str(path), n, seed=1, bad_every=10_000)
        gen_s = time.perf_counter() - t
        size_mb = path.stat().st_size / 1e6
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(args.near_dup_sample)],
            env=env, check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r.update(lines=lines, size_mb=size_mb, gen_s=gen_s)
        results.append(r)
        if not args.keep:
            path.unlink()
    print(f"\nthrifty audit on synthetic OpenAI-format JSONL (near-duplicate sample {args.near_dup_sample})")
    print(f"{'lines':>10} {'MB':>8} {'bad':>6} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>12} {'exact dups':>11} "
          f"{'retries':>8} {'near-dup s':>10} {'pairs':>6} {'found':>6}")  # fmt: skip
    for r in results:
        print(
            f"{r['lines']:>10,} {r['size_mb']:>8,.0f} {r['bad']:>6,} {r['seconds']:>8.1f} "
            f"{r['rows'] / r['seconds']:>8,.0f} {r['peak_rss_mb']:>12.0f} {r['exact_dups']:>11,} {r['retries']:>8,} "
            f"{r['finish_s']:>10.1f} {r['near_checked']:>6,} {r['near_found']:>6,}"
        )
    if not args.keep:
        workdir.rmdir()


if __name__ == "__main__":
    main()
