"""What limits the MMLU routing figure: router variants compared out of fold on the train split.

The MMLU target (95% of GPT-4's accuracy with <= 40% of calls to GPT-4) is chosen and measured
as `benchmarks/routing.py` does: a fixed 80/20 split by question, 10-fold out-of-fold predictions
on the 80%. This script never reads the 20%. For each variant it prints the share of calls to
GPT-4 that reaching 95% of GPT-4's accuracy needs when prompts are sent to GPT-4 in order of the
predicted gain P(GPT-4 right) - P(Mixtral right), and the mean of that share over bootstrap
resamples of the prompts (the single figure moves by a point or two between resamples).

Variants: the learned router's logistic regression on the MiniLM embedding and structural
features (several strengths), the nearest-neighbour vote (several counts), their blends,
gradient boosting and a small MLP on the same features, and features of a multiple-choice
prompt's options (how alike the options are to each other and to the question). With
`--embeddings-npy FILE` (rows in the order of `--dump-texts`'s file), the same logistic
regression and vote also run on another encoder's embeddings, to see whether the encoder
is what limits the figure.

Usage: PYTHONPATH=src python scripts/router_cv.py [--data ../shared/data/routing] [--out out/routing]
       PYTHONPATH=src python scripts/router_cv.py --dump-texts train_texts.json
       PYTHONPATH=src python scripts/router_cv.py --embeddings-npy mpnet_train.npy
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.routing.datasets import convert_routellm_mmlu
from thrifty.routing.features import STRUCTURE_FEATURES, Embed, FeatureSpec, featurize
from thrifty.routing.labeled import split_fixed
from thrifty.routing.learned import _folds, _neighbour_oof, fit_candidate, label_matrices

GPT4 = "gpt-4-1106-preview"
_OPTION_LINE = re.compile(r"^\(?([A-J])[.)]\s+(.*)$")


def share_needed(p: np.ndarray, quality: np.ndarray, strong: int, weak: int, target: float = 0.95) -> float:
    """The fewest calls to the strong model (as a share) reaching `target` x its accuracy, when
    prompts go to it in order of the predicted gain p[strong] - p[weak]."""
    order = np.argsort(-(p[:, strong] - p[:, weak]), kind="stable")
    gain = quality[order, strong] - quality[order, weak]
    accuracy = quality[:, weak].mean() + np.cumsum(gain) / len(quality)
    hit = np.nonzero(accuracy >= target * quality[:, strong].mean() - 1e-12)[0]
    return float((hit[0] + 1) / len(quality)) if len(hit) else 1.0


def bootstrap_share(p: np.ndarray, quality: np.ndarray, strong: int, weak: int, n: int = 200) -> float:
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(quality), len(quality)) for _ in range(n)]
    return float(np.mean([share_needed(p[i], quality[i], strong, weak) for i in draws]))


def split_options(prompt: str) -> tuple[str, list[str]]:
    """A multiple-choice prompt's question and its option texts (no options: the prompt, [])."""
    lines = prompt.rstrip().removesuffix("Answer:").rstrip().split("\n")
    end = len(lines)
    while end > 0 and _OPTION_LINE.match(lines[end - 1]):
        end -= 1
    options = [m.group(2) for line in lines[end:] if (m := _OPTION_LINE.match(line))]
    return "\n".join(lines[:end]), options


def option_features(prompts: Sequence[str], embed: Embed) -> np.ndarray:
    """How alike a prompt's options are to each other and to its question, and their lengths."""
    parts = [split_options(t) for t in prompts]
    stems = embed([s for s, _ in parts])
    flat = [o for _, opts in parts for o in opts]
    opt_vecs = embed(flat) if flat else np.zeros((0, stems.shape[1]), np.float32)
    rows: list[list[float]] = []
    pos = 0
    for i, (_, opts) in enumerate(parts):
        o = opt_vecs[pos : pos + len(opts)]
        pos += len(opts)
        if len(opts) < 2:
            rows.append([0.0] * 9)
            continue
        pair = (o @ o.T)[np.triu_indices(len(opts), 1)]
        to_stem = np.sort(o @ stems[i])[::-1]
        lengths = np.array([len(t) for t in opts], dtype=np.float64)
        rows.append(
            [
                float(pair.mean()),
                float(pair.max()),
                float(pair.min()),
                float(to_stem.mean()),
                float(to_stem[0]),
                float(to_stem[0] - to_stem[1]),
                float(to_stem.std()),
                float(np.log1p(lengths.mean())),
                float(lengths.std() / max(lengths.mean(), 1.0)),
            ]
        )
    return np.array(rows, dtype=np.float32)


def logistic_oof(
    x: np.ndarray, quality: np.ndarray, splits: list[list[np.ndarray]], grid: Sequence[float]
) -> np.ndarray:
    return np.column_stack(
        [fit_candidate(x, quality[:, j], splits, grid)[1] for j in range(quality.shape[1])]
    )


def sklearn_oof(
    make: Callable[[], Any], x: np.ndarray, quality: np.ndarray, folds: list[np.ndarray]
) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    out = np.zeros_like(quality)
    with threadpool_limits(1):
        for fold in folds:
            train = np.setdiff1d(np.arange(len(quality)), fold)
            for j in range(quality.shape[1]):
                model = make()
                model.fit(x[train], quality[train, j])
                out[fold, j] = model.predict_proba(x[fold])[:, 1]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data" / "routing")
    ap.add_argument(
        "--out",
        type=Path,
        default=root / "out" / "routing",
        help="embedding cache (shared with the benchmark)",
    )
    ap.add_argument(
        "--dump-texts", type=Path, help="write the train prompts (JSON list) for another encoder, and stop"
    )
    ap.add_argument(
        "--embeddings-npy", type=Path, help="another encoder's embeddings of those prompts, one row each"
    )
    ap.add_argument("--slow", action="store_true", help="also gradient boosting and an MLP (minutes)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(root / "benchmarks"))
    from routing import cached_embed  # type: ignore[import-not-found]

    conv = convert_routellm_mmlu(args.data / "routellm_mmlu")
    train_set, _ = split_fixed(conv.examples, 0.8, salt="mmlu-80-20")
    texts = [e.text for e in train_set]
    if args.dump_texts:
        args.dump_texts.write_text(json.dumps(texts))
        print(f"wrote {len(texts)} train prompts to {args.dump_texts}")
        return 0
    names = sorted(train_set[0].candidates)
    strong, weak = names.index(GPT4), 1 - names.index(GPT4)
    quality, _ = label_matrices(train_set, names)
    embed = cached_embed(args.out)
    x = featurize(texts, FeatureSpec(), embed)
    emb = x[:, len(STRUCTURE_FEATURES) :]
    splits = _folds(len(train_set), 10, 0, 1)

    def show(label: str, p: np.ndarray) -> None:
        print(
            f"  {label:<58} {share_needed(p, quality, strong, weak):6.1%}   "
            f"{bootstrap_share(p, quality, strong, weak):6.1%}",
            flush=True,
        )

    print(
        f"MMLU train split: {len(train_set)} questions, 10-fold out of fold; share of calls to GPT-4 for 95%"
    )
    print(f"  {'variant':<58} {'share':>6}   {'bootstrap mean':>6}")
    # Not a router: each question's subject (which the prompt does not carry) and every subject's
    # gain rate measured on these very rows, the most that routing by topic alone could do.
    subjects = np.array([e.meta["subject"] for e in train_set])
    gain = quality[:, strong] - quality[:, weak]
    by_subject = np.zeros_like(quality)
    for s in set(subjects.tolist()):
        by_subject[subjects == s, strong] = gain[subjects == s].mean()
    show("subject's own gain rate, in sample (a topic bound)", by_subject)
    lr = {c: logistic_oof(x, quality, splits, [c]) for c in (0.001, 0.003, 0.01)}
    for c, p in lr.items():
        show(f"logistic regression, MiniLM + structure, C={c:g}", p)
    knn = {k: _neighbour_oof(emb, quality, splits, k) for k in (20, 50, 100, 200)}
    for k, p in knn.items():
        show(f"nearest-neighbour vote, k={k}", p)
    for w in (0.5, 0.25):
        show(
            f"blend {w:g} x logistic + {1 - w:g} x vote k=50 (the router)", w * lr[0.003] + (1 - w) * knn[50]
        )
    multi = np.mean([knn[k] for k in (50, 100, 200)], axis=0)
    show("blend 0.25 x logistic + 0.75 x votes k=50,100,200", 0.25 * lr[0.003] + 0.75 * multi)
    opts = option_features(texts, embed)
    with_opts = logistic_oof(np.hstack([x, opts]), quality, splits, [0.003])
    show("logistic + option features", with_opts)
    show("blend 0.5 x (logistic + option features) + 0.5 x vote k=50", 0.5 * with_opts + 0.5 * knn[50])
    if args.slow:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        hgb = sklearn_oof(
            lambda: HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15),
            x,
            quality,
            splits[0],
        )
        show("gradient boosting", hgb)
        mlp = sklearn_oof(
            lambda: make_pipeline(
                StandardScaler(), MLPClassifier((64,), alpha=1.0, early_stopping=True, random_state=0)
            ),
            x,
            quality,
            splits[0],
        )
        show("MLP (64 hidden)", mlp)
    if args.embeddings_npy:
        other = np.load(args.embeddings_npy).astype(np.float32)
        if other.shape[0] != len(texts):
            raise SystemExit(f"{args.embeddings_npy}: {other.shape[0]} rows, expected {len(texts)}")
        ox = np.hstack([x[:, : len(STRUCTURE_FEATURES)], other])
        olr = logistic_oof(ox, quality, splits, (0.001, 0.003, 0.01))
        show(f"{args.embeddings_npy.stem}: logistic regression", olr)
        oknn = _neighbour_oof(other, quality, splits, 50)
        show(f"{args.embeddings_npy.stem}: vote k=50", oknn)
        for w in (0.5, 0.25):
            show(
                f"{args.embeddings_npy.stem}: blend {w:g} x logistic + {1 - w:g} x vote",
                w * olr + (1 - w) * oknn,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
