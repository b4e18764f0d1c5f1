"""Compare verifier feature sets by grouped cross-validation on the train and val splits.

    PYTHONPATH=src python scripts/verifier_cv.py [--folds 5] [--token-alignment] [--show-negatives 60]

The real QQP pairs of `train` and `val` (the `test` split is never read) are cut into folds
by their group of shared questions (thrifty/cache/pairdata.py), so no question is on both
sides of a fold. Each fold's model is trained as scripts/train_verifier.py trains the shipped
one (both orders of each pair, the same classifier settings, the synthetic positives always
in training, the embedding projection fitted on the training folds), and the out-of-fold
probabilities of all real pairs are pooled: AUC, and the precision of the highest-scored
pairs (guards applied) at recall 0.10 ... 0.30. Pooling 16,000 pairs gives a steadier curve
than the 3,821 pairs of `val` alone.

--token-alignment adds features from MiniLM's contextual word-piece states (what the
embedding's mean pooling blurs): for the content pieces of each side, their best cosine to
the other side's pieces -- min, second lowest, mean, how many fall below 0.5 / 0.6 / 0.7 --
and BERTScore-style precision, recall and F1 over all pieces.

--show-negatives N prints a fixed random sample of the pairs labelled "different" among the
highest-scored ones (up to recall 0.30), to judge by eye how many are label noise.
Results are in docs/verifier.md.
"""

from __future__ import annotations

import argparse
import hashlib
import string
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_verifier import make_classifier, surface_variants  # noqa: E402

from thrifty.cache.pairdata import (  # noqa: E402
    MOCK_FILE,
    QQP_FILE,
    embed_cached,
    group_keys,
    load_mock_pairs,
    load_qqp,
    shared_data,
)
from thrifty.cache.verifier import (  # noqa: E402
    _STOPWORDS,
    negation_differs,
    numbers_differ,
    pair_features,
    same_text,
)

RECALLS = (0.10, 0.15, 0.20, 0.25, 0.30)
TOKEN_FEATURES = (
    "tok_min_lo", "tok_min_hi", "tok_second_lo", "tok_mean_lo", "tok_mean_hi",
    "tok_below_50", "tok_below_60", "tok_below_70", "tok_below_70_max", "bert_p", "bert_r", "bert_f",
)  # fmt: skip


def token_alignment(texts: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each text's piece states (all pieces, float16) and the mask of its content pieces."""
    from thrifty.embed import shared_embedder

    embedder = shared_embedder()
    vocab = embedder._tokenizer.get_vocab()
    content = np.zeros(max(vocab.values()) + 1, bool)
    for piece, i in vocab.items():
        word = piece.removeprefix("##")
        content[i] = piece.startswith("##") or not (
            all(c in string.punctuation for c in word) or word in _STOPWORDS
        )
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for text, (ids, states) in zip(texts, embedder.token_states(texts), strict=True):
        mask = content[ids] if len(ids) else np.zeros(0, bool)
        out[text] = (states.astype(np.float16), mask if mask.any() else np.ones(len(ids), bool))
    return out


def token_features(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> list[float]:
    (sa, ca), (sb, cb) = a, b
    if not len(sa) or not len(sb):
        return [0.0] * len(TOKEN_FEATURES)
    full = sa.astype(np.float32) @ sb.astype(np.float32).T
    sim = full[ca][:, cb]
    ma, mb = sim.max(axis=1), sim.max(axis=0)

    def second(m: np.ndarray) -> float:
        return float(np.sort(m)[1]) if len(m) > 1 else 1.0

    p, r = float(full.max(axis=0).mean()), float(full.max(axis=1).mean())
    below = [float((ma < t).sum() + (mb < t).sum()) for t in (0.5, 0.6, 0.7)]
    return [
        float(min(ma.min(), mb.min())), float(max(ma.min(), mb.min())), min(second(ma), second(mb)),
        float(min(ma.mean(), mb.mean())), float(max(ma.mean(), mb.mean())),
        *below, float(max((ma < 0.7).sum(), (mb < 0.7).sum())), p, r, 2 * p * r / max(p + r, 1e-9),
    ]  # fmt: skip


def precision_at_recall(probs: np.ndarray, labels: np.ndarray, ok: np.ndarray) -> tuple[list[float], int]:
    """Precision of the top-scored pairs (guards passed) at each of RECALLS; and the rank of recall 0.30."""
    order = np.argsort(-np.where(ok, probs, -np.inf), kind="stable")
    hits = np.cumsum(labels[order])
    out, last = [], 0
    for r in RECALLS:
        k = int(np.searchsorted(hits, r * labels.sum())) + 1
        out.append(float(hits[k - 1] / k))
        last = k
    return out, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qqp", type=Path, default=shared_data(QQP_FILE))
    ap.add_argument("--mock", type=Path, default=shared_data(MOCK_FILE))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--components", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument(
        "--token-alignment", action="store_true", help="also evaluate with word-piece alignment features"
    )
    ap.add_argument("--show-negatives", type=int, default=0, metavar="N")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    pairs = [p for p in load_qqp(args.qqp) if p.split in ("train", "val")]
    train_questions = [q for p in pairs if p.split == "train" for q in (p.text_a, p.text_b)]
    mock = load_mock_pairs(args.mock) if args.mock.exists() else []
    synthetic = mock + surface_variants(train_questions, 2000)
    ta = [p.text_a for p in pairs] + [a for a, _ in synthetic]
    tb = [p.text_b for p in pairs] + [b for _, b in synthetic]
    y = np.array([p.label for p in pairs] + [1] * len(synthetic))
    real = len(pairs)
    fold = np.array(
        [
            int(hashlib.sha256(k.encode()).hexdigest()[8:16], 16) % args.folds
            for k in group_keys([(p.text_a, p.text_b) for p in pairs])
        ]
    )
    ok = np.array(
        [
            not (same_text(a, b) or numbers_differ(a, b) or negation_differs(a, b))
            for a, b in zip(ta[:real], tb[:real], strict=True)
        ]
    )
    emb = embed_cached(ta + tb)
    ea, eb = emb[: len(ta)], emb[len(ta) :]
    lex, lex_swapped = pair_features(ta, tb, ea, eb, None), pair_features(tb, ta, eb, ea, None)
    print(
        f"{real} real pairs ({int(y[:real].sum())} duplicates) in {args.folds} folds,"
        f" {len(synthetic)} synthetic positives"
    )

    feature_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {"shipped features": (lex, lex_swapped)}
    if args.token_alignment:
        states = token_alignment(list(dict.fromkeys(ta + tb)))
        tok = np.array(
            [token_features(states[a], states[b]) for a, b in zip(ta, tb, strict=True)], np.float32
        )
        tok_swapped = np.array(
            [token_features(states[b], states[a]) for a, b in zip(ta, tb, strict=True)], np.float32
        )
        del states
        feature_sets["+ token alignment"] = (np.hstack([lex, tok]), np.hstack([lex_swapped, tok_swapped]))
        print(f"token alignment features in {time.perf_counter() - started:.0f}s")

    print(f"{'features':<22} {'AUC':>6}  precision at recall " + " ".join(f"{r:.2f}" for r in RECALLS))
    for name, (x, x_swapped) in feature_sets.items():
        oof = np.zeros(real)
        for f in range(args.folds):
            fit = np.concatenate([fold != f, np.ones(len(synthetic), bool)])
            blocks, blocks_swapped = [x], [x_swapped]
            if args.components:
                pca = PCA(n_components=args.components, random_state=0).fit(np.vstack([ea[fit], eb[fit]]))
                pa, pb = ea @ pca.components_.T, eb @ pca.components_.T
                inter = np.hstack([np.abs(pa - pb), pa * pb])
                blocks.append(inter)
                blocks_swapped.append(inter)
            xx, xs = np.hstack(blocks), np.hstack(blocks_swapped)
            clf = make_classifier(args.iterations)
            clf.fit(np.vstack([xx[fit], xs[fit]]), np.concatenate([y[fit], y[fit]]))
            held = np.flatnonzero(fold == f)
            oof[held] = clf.predict_proba(xx[held])[:, 1]
        precisions, top = precision_at_recall(oof, y[:real], ok)
        auc = roc_auc_score(y[:real], oof)
        print(f"{name:<22} {auc:6.4f}  " + "      ".join(f"{p:.3f}"[1:] for p in precisions), flush=True)
        if args.show_negatives and name == "shipped features":
            order = np.argsort(-np.where(ok, oof, -np.inf), kind="stable")[:top]
            negatives = order[y[order] == 0]
            rng = np.random.default_rng(42)
            sample = np.sort(rng.choice(negatives, min(args.show_negatives, len(negatives)), replace=False))
            print(f"  {len(negatives)} of the {top} top-scored pairs are labelled different; a sample:")
            for i in sample:
                print(f"    {oof[i]:.3f} | {ta[i]} | {tb[i]}")
    print(f"done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
