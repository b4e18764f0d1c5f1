"""Choose the verifier's threshold on the `val` split, by adjudicated precision.

    .venv/bin/python scripts/pick_verifier_settings.py [--precision 0.95] [--write] [--todo todo.jsonl]

The trees (src/thrifty/data/verifier.npz, trained on `train` only by scripts/train_verifier.py)
score the `val` pairs a cache would verify (embedding cosine >= min_cosine). A served pair
counts as right when QQP labels it a duplicate, or when it is labelled different and the
verdict recorded in benchmarks/data/qqp_adjudication.jsonl says it is the same question (QQP
calls many same-question pairs different, docs/verifier.md); a served pair labelled different
with no verdict yet counts as wrong.

The rule: the lowest threshold at which the lower end of the one-sided 95% Wilson interval
of adjudicated precision on val is still >= --precision (at least 20 hits), i.e. the most
recall whose precision is at least the target with a margin for the 3,821 pairs' noise (the
point estimate alone would sit exactly on the target). `--write` stores the threshold in
verifier.npz's metadata.

`--todo FILE` writes the pairs labelled different that the chosen threshold, or any down to
--todo-below, would serve and that have no verdict yet: judge them, add the verdicts to the
adjudication file, and run again until none of the chosen hits is left unjudged. `test` is
never read here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from thrifty.cache.pairdata import ADJUDICATION_FILE, embedded_split, load_adjudication, pair_key
from thrifty.cache.semantic import SemanticCacheSettings
from thrifty.cache.verifier import DEFAULT_MODEL, Verifier

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "src" / "thrifty" / "data" / DEFAULT_MODEL


def wilson_low(right: int, n: int, z: float = 1.645) -> float:
    """Lower end of the Wilson interval (z = 1.645: one-sided 95%)."""
    if n == 0:
        return 0.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    return centre - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", type=float, default=0.95)
    ap.add_argument("--min-hits", type=int, default=20)
    ap.add_argument("--write", action="store_true", help="store the chosen threshold in verifier.npz")
    ap.add_argument("--todo", type=Path, help="write the served val pairs that still need a verdict here")
    ap.add_argument("--todo-below", type=float, default=0.78, help="list unjudged pairs down to this tree score")
    args = ap.parse_args(argv)

    pairs, labels, ea, eb, cos = embedded_split("val")
    a, b = [p.text_a for p in pairs], [p.text_b for p in pairs]
    verifier = Verifier.load(MODEL)
    verdicts = verifier.decide(a, b, ea, eb, threshold=0.0)
    tree = np.array([v.score for v in verdicts])
    eligible = cos >= SemanticCacheSettings().min_cosine
    always = eligible & np.array([v.reason == "same text" for v in verdicts])
    model_ok = eligible & np.array([v.reason == "model" for v in verdicts])

    adjudication = load_adjudication()
    same = np.array([
        (v := adjudication.get(pair_key(p.text_a, p.text_b))) is not None and v.verdict == "same" for p in pairs
    ])  # fmt: skip
    judged = np.array([pair_key(p.text_a, p.text_b) in adjudication for p in pairs])
    right_if_served = (labels == 1) | same
    positives = int(labels.sum())

    print(f"val: {len(pairs)} pairs, {positives} duplicates, {int(eligible.sum())} with cosine >= min_cosine")
    print("  threshold  hits  recall  precision: labels  adjudicated (95% low)  unjudged")
    best: tuple[float, float, float, float, int] | None = None
    shown = -1
    for t in np.unique(np.round(tree[model_ok], 4))[::-1]:
        served = (model_ok & (tree >= t)) | always
        n = int(served.sum())
        if n < args.min_hits:
            continue
        right = int(right_if_served[served].sum())
        low = wilson_low(right, n)
        recall = int(labels[served].sum()) / positives
        if low >= args.precision:
            best = (float(t), recall, right / n, low, n)
        if int(t * 50) != shown and t >= 0.5:  # one row per 0.02 of threshold
            shown = int(t * 50)
            unjudged = int((served & (labels == 0) & ~judged).sum())
            print(f"  {t:9.4f} {n:5d}  {recall:6.3f}  {labels[served].mean():17.3f}  {right / n:11.3f} ({low:.3f})  {unjudged:8d}")
    if best is None:
        print(f"no threshold reaches adjudicated precision {args.precision} with its margin", file=sys.stderr)
        return 1
    t, recall, precision, low, n = best
    served = (model_ok & (tree >= t)) | always
    missing = np.flatnonzero(served & (labels == 0) & ~judged)
    print(f"chosen: threshold {t:.4f}: val hits {n}, recall {recall:.3f}, adjudicated precision {precision:.3f} "
          f"(one-sided 95% low {low:.3f}; by QQP labels {labels[served].mean():.3f}); {len(missing)} hits unjudged")
    if args.todo:
        need = np.flatnonzero(model_ok & (tree >= min(t, args.todo_below)) & (labels == 0) & ~judged)
        with args.todo.open("w", encoding="utf-8") as f:
            for i in sorted(need.tolist(), key=lambda i: -tree[i]):
                p = pairs[i]
                f.write(json.dumps({"key": pair_key(p.text_a, p.text_b), "split": "val", "text_a": p.text_a,
                                    "text_b": p.text_b, "qqp_label": p.label, "verdict": "", "reason": ""}) + "\n")
        print(f"wrote {len(need)} pairs to judge to {args.todo} (verdicts go in {ADJUDICATION_FILE})")
    if args.write:
        if len(missing):
            print("refusing to write: some chosen hits have no verdict yet", file=sys.stderr)
            return 1
        verifier.threshold = t
        verifier.meta.update(
            val_precision=round(float(labels[served].mean()), 4),
            val_precision_adjudicated=round(precision, 4),
            val_precision_adjudicated_low=round(low, 4),
            val_recall=round(recall, 4),
            threshold_rule="scripts/pick_verifier_settings.py: lowest threshold whose one-sided 95% Wilson low "
            f"of adjudicated val precision is >= {args.precision}",
        )
        verifier.save(MODEL)
        print(f"wrote threshold {t:.4f} to {MODEL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
