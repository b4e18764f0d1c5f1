"""Train the semantic cache's verifier and write it to src/thrifty/data/verifier.npz.

    PYTHONPATH=src python scripts/train_verifier.py [--qqp PATH] [--mock PATH] [--out PATH]

Reads the `train` split of QQP (split rule in thrifty/cache/pairdata.py) plus GPTCache's
paraphrase pairs as extra positives, fits a histogram gradient boosting classifier on the
pair features, and picks the acceptance threshold on the `val` split: the lowest threshold
whose precision there (guards applied) is at least --precision. The `test` split is never
read here; benchmarks/semantic_cache.py measures on it. Provenance: docs/verifier.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from thrifty.cache.pairdata import MOCK_FILE, QQP_FILE, embed_cached, load_mock_pairs, load_qqp, shared_data
from thrifty.cache.verifier import LEXICAL_FEATURES, TreeEnsemble, Verifier, pair_features

ROOT = Path(__file__).resolve().parent.parent


_REWORDINGS = (
    ("How do I ", "How can I "),
    ("How can I ", "How do I "),
    ("What is the best way to ", "How do I best "),
    ("What are some ", "What are "),
    ("What is ", "What's "),
    ("Why do ", "Why is it that "),
    ("Which is ", "What is "),
)


def surface_variants(questions: list[str], n: int) -> list[tuple[str, str]]:
    """Positives that differ the way cache traffic does: fillers, politeness, rewordings.

    QQP has no such near-identical duplicates, so without them the model doubts exactly
    the easy cases. Deterministic: the questions are picked by sha256 order.
    """
    import hashlib

    picked = sorted(set(questions), key=lambda q: hashlib.sha256(q.encode()).hexdigest())[:n]
    out: list[tuple[str, str]] = []
    for i, q in enumerate(picked):
        body = q.rstrip(" ?")
        lowered = body[:1].lower() + body[1:]
        kind = i % 5
        if kind == 0:
            v = f"Can you tell me {lowered}?"
        elif kind == 1:
            v = f"{body}? Please answer briefly."
        elif kind == 2:
            v = f"Quick question: {lowered}?"
        elif kind == 3:
            v = f"{body.lower()}"
        else:
            v = next((q.replace(a, b, 1) for a, b in _REWORDINGS if q.startswith(a)), f"I wonder, {lowered}?")
        out.append((q, v))
    return out


def make_classifier(iterations: int) -> HistGradientBoostingClassifier:
    """The shipped verifier's model (scripts/verifier_cv.py trains its folds with it too)."""
    return HistGradientBoostingClassifier(
        max_iter=iterations,
        learning_rate=0.05,
        max_leaf_nodes=31,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    )


def pick_threshold(probs: np.ndarray, labels: np.ndarray, guard_ok: np.ndarray, target: float) -> tuple[float, float, float]:
    """Lowest threshold with precision >= target (guards applied); returns (t, precision, recall)."""
    positives = int(labels.sum())
    best = (1.0, 1.0, 0.0)
    for t in np.unique(np.round(probs, 4))[::-1]:
        hit = (probs >= t) & guard_ok
        if hit.sum() < 20:
            continue
        precision = float(labels[hit].mean())
        recall = float(labels[hit].sum() / positives)
        if precision >= target and recall > best[2]:
            best = (float(t), precision, recall)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qqp", type=Path, default=shared_data(QQP_FILE))
    ap.add_argument("--mock", type=Path, default=shared_data(MOCK_FILE))
    ap.add_argument("--out", type=Path, default=ROOT / "src/thrifty/data/verifier.npz")
    ap.add_argument("--precision", type=float, default=0.95, help="precision to reach on val")
    ap.add_argument("--components", type=int, default=32, help="embedding projection size (0 = none)")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--variants", type=int, default=2000, help="surface-variant positives to add")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    pairs = load_qqp(args.qqp)
    train = [p for p in pairs if p.split == "train"]
    val = [p for p in pairs if p.split == "val"]
    mock = load_mock_pairs(args.mock) if args.mock.exists() else []
    print(f"QQP pairs: {len(pairs)}  train {len(train)}  val {len(val)}  (test held out)  mock positives {len(mock)}")

    variants = surface_variants([p.text_a for p in train] + [p.text_b for p in train], args.variants)
    print(f"surface-variant positives: {len(variants)}")
    ta = [p.text_a for p in train] + [a for a, _ in mock] + [a for a, _ in variants]
    tb = [p.text_b for p in train] + [b for _, b in mock] + [b for _, b in variants]
    y = np.array([p.label for p in train] + [1] * (len(mock) + len(variants)))
    va, vb = [p.text_a for p in val], [p.text_b for p in val]
    vy = np.array([p.label for p in val])

    emb = embed_cached(ta + tb + va + vb)
    ea, eb = emb[: len(ta)], emb[len(ta) : 2 * len(ta)]
    vea, veb = emb[2 * len(ta) : 2 * len(ta) + len(va)], emb[2 * len(ta) + len(va) :]
    print(f"embedded in {time.perf_counter() - started:.0f}s")

    projection = None
    if args.components:
        pca = PCA(n_components=args.components, random_state=0).fit(np.vstack([ea, eb]))
        projection = pca.components_.T.astype(np.float32)
    x = pair_features(ta, tb, ea, eb, projection)
    vx = pair_features(va, vb, vea, veb, projection)
    # Both orders of every pair, so the model does not learn which side came first.
    x2 = pair_features(tb, ta, eb, ea, projection)
    clf = make_classifier(args.iterations)
    clf.fit(np.vstack([x, x2]), np.concatenate([y, y]))

    model = TreeEnsemble.from_sklearn(clf)
    probs = model.proba(vx)
    drift = float(np.abs(probs - clf.predict_proba(vx)[:, 1]).max())
    if drift > 1e-6:
        print(f"exported trees disagree with scikit-learn by {drift:.2e}", file=sys.stderr)
        return 1
    verifier = Verifier(model, projection, 0.5, {})
    guard_ok = np.array([v.reason == "model" for v in verifier.decide(va, vb, vea, veb, threshold=0.0)])
    threshold, precision, recall = pick_threshold(probs, vy, guard_ok, args.precision)
    auc = roc_auc_score(vy, probs)
    print(f"val AUC {auc:.4f}; threshold {threshold:.4f}: precision {precision:.3f} recall {recall:.3f}")

    import sklearn

    verifier.threshold = threshold
    verifier.meta = {
        "lexical_features": list(LEXICAL_FEATURES),
        "projection_components": args.components,
        "trained_on": "QQP dev quarter (GPTCache similiar_qqp_full), split 'train'; GPTCache mock_data.json positives",
        "train_pairs": len(train),
        "mock_pairs": len(mock),
        "surface_variant_pairs": len(variants),
        "val_pairs": len(val),
        "val_auc": round(auc, 4),
        "val_precision": round(precision, 4),
        "val_recall": round(recall, 4),
        "target_precision": args.precision,
        "sklearn": sklearn.__version__,
        "iterations": args.iterations,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    verifier.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
