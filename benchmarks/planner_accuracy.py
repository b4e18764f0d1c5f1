#!/usr/bin/env python
"""How well the planner's throughput model predicts published measurements it was not fitted on.

Fits the efficiency factors on the calibration split of src/thrifty/planner/data/measurements.yaml,
then prints, for every held-out point, the published figure, the calibrated prediction and its
error, next to the error of the uncalibrated roofline (datasheet peaks, perfect overlap, free
all-reduces). Pure arithmetic on published numbers: no GPU needed, deterministic, under a second.

    .venv/bin/python benchmarks/planner_accuracy.py [--markdown] [--all]
"""

from __future__ import annotations

import argparse

from thrifty.planner.calibration import Accuracy, accuracy, fit, load_points
from thrifty.planner.catalog import load_catalog
from thrifty.planner.sanity import check_point


def _summary(name: str, acc: list[Accuracy]) -> str:
    n = len(acc)
    within = sum(abs(a.error) <= 0.20 for a in acc)
    mean = sum(abs(a.error) for a in acc) / n
    roof = sum(abs(a.roofline_error) for a in acc) / n
    roof_within = sum(abs(a.roofline_error) <= 0.20 for a in acc)
    worst = max(acc, key=lambda a: abs(a.error))
    return (f"{name}: {n} points; calibrated: {within}/{n} within ±20%, mean |error| {mean:.1%}, worst "
            f"{worst.error:+.1%} ({worst.point.label}); uncalibrated roofline: {roof_within}/{n} within ±20%, "
            f"mean |error| {roof:.1%}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    ap.add_argument("--all", action="store_true", help="also list the calibration points")
    args = ap.parse_args()
    points = load_points()
    cal = [p for p in points if p.split == "calibration"]
    held = [p for p in points if p.split == "held_out"]
    eff = fit(cal)
    print(f"fitted on {len(cal)} calibration points: weights {eff.bandwidth:.3f} and KV cache "
          f"{eff.kv_bandwidth:.3f} of peak bandwidth, {eff.compute:.3f} of peak FLOPs, "
          f"{eff.allreduce_s * 1e6:.1f} µs per all-reduce, memory and compute time added (no overlap)\n")  # fmt: skip
    rows = accuracy(held, eff) + (accuracy(cal, eff) if args.all else [])
    header = ("split", "setup", "engine", "published", "calibrated", "error", "roofline", "roofline error")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print(f"{'split':<11} {'setup':<58} {'engine':<12} {'published':>10} {'calibrated':>10} {'error':>7} "
              f"{'roofline':>10} {'roof err':>8}")  # fmt: skip
    for a in rows:
        p = a.point
        cells = (p.split, p.label, p.engine, f"{p.value:,.4g}", f"{a.predicted:,.4g}", f"{a.error:+.1%}",
                 f"{a.roofline:,.4g}", f"{a.roofline_error:+.1%}")  # fmt: skip
        if args.markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print(f"{cells[0]:<11} {cells[1]:<58} {cells[2]:<12} {cells[3]:>10} {cells[4]:>10} {cells[5]:>7} "
                  f"{cells[6]:>10} {cells[7]:>8}")  # fmt: skip
    print()
    beaten = [f.message for p in points if (f := check_point(p, load_catalog())) is not None]
    print(f"published points that beat the roofline of their own setup: {len(beaten)}", *beaten, sep="\n  ")
    print(_summary("held out", accuracy(held, eff)))
    print(_summary("calibration (fitted on)", accuracy(cal, eff)))


if __name__ == "__main__":
    main()
