"""The learned router: one classifier per candidate predicting P(good answer) from prompt features.

Training fits a regularised logistic regression per candidate (soft labels for graded quality),
picks its strength by cross-validation and keeps the out-of-fold predictions to calibrate the
policy knob for a quality target. The artifact is a versioned pickle: format version, candidate
names, feature spec, training-data hash, scikit-learn version, per-candidate models and costs,
and the calibration. Pickles run code when loaded: load only artifacts you trained.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.errors import DataError
from thrifty.routing.features import Embed, FeatureSpec, featurize
from thrifty.routing.labeled import Example, common_candidates, data_hash
from thrifty.routing.policy import POLICIES, Point, Policy, cheapest_meeting, choose, sweep
from thrifty.routing.uncertainty import reach_rates, resample_counts

FORMAT_VERSION = 1
MAGIC = "thrifty-router"
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
DIFFICULTY = "__difficulty__"


class Neighbours:
    """P(good) as the (smoothed) share of the k most similar training prompts each candidate got
    right: local evidence that a linear model over the whole embedding space smooths away."""

    def __init__(self, emb: np.ndarray, quality: np.ndarray, k: int = 50, prior_weight: float = 2.0) -> None:
        self.emb = np.asarray(emb, dtype=np.float32)
        self.quality = np.asarray(quality, dtype=np.float32)
        self.k = min(k, len(self.emb))
        self.prior = self.quality.mean(axis=0)
        self.prior_weight = prior_weight

    def predict(self, emb: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        out = np.zeros((len(emb), self.quality.shape[1]))
        for start in range(0, len(emb), 1024):
            sims = np.asarray(emb[start : start + 1024], dtype=np.float32) @ self.emb.T
            idx = np.argpartition(-sims, self.k - 1, axis=1)[:, : self.k]
            votes = self.quality[idx].sum(axis=1)
            out[start : start + 1024] = (votes + self.prior_weight * self.prior) / (
                self.k + self.prior_weight
            )
        return out


def _neighbour_oof(
    emb: np.ndarray, quality: np.ndarray, splits: list[list[np.ndarray]], k: int
) -> np.ndarray:
    oof = np.zeros_like(quality)
    for folds in splits:
        for fold in folds:
            train = np.setdiff1d(np.arange(len(quality)), fold)
            oof[fold] += Neighbours(emb[train], quality[train], k).predict(emb[fold])
    return oof / len(splits)


BLEND_GRID = (1.0, 0.75, 0.5, 0.25)
BLEND_BY = ("loss", "target")


class ArtifactError(DataError):
    """A router artifact that cannot be used, with the reason."""


@dataclass
class Calibration:
    """A policy setting chosen on held-out (or out-of-fold) predictions for a quality target."""

    policy: Policy
    knob: float
    target: float  # fraction of the best single candidate's quality
    quality: float
    cost_per_call: float
    best_quality: float
    best_cost_per_call: float
    source: str = "out-of-fold"
    #: False when no setting reached the target: the setting with the best quality is kept
    met: bool = True
    #: share of calls the setting sends to the reference model
    reference_share: float = 0.0
    #: the cost cap (fraction of the reference model's cost) the setting was chosen under
    max_cost: float | None = None
    #: the bootstrap confidence the setting was asked to meet the target with (None: point estimate)
    confidence: float | None = None
    #: share of bootstrap resamples of the calibration rows in which the setting meets the target
    reach_probability: float | None = None


@dataclass
class RouterArtifact:
    """What `thrifty router train` writes and `serve` loads."""

    candidates: list[str]
    feature_spec: dict[str, Any]
    data_hash: str
    sklearn_version: str
    models: dict[str, Any]
    costs: dict[str, float]
    n_examples: int
    kind: str = "router"
    format_version: int = FORMAT_VERSION
    created: float = field(default_factory=time.time)
    calibration: Calibration | None = None
    #: policy -> list of (knob, quality, cost per call) on the calibration data, for target lookups
    curves: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    chosen_c: dict[str, float] = field(default_factory=dict)
    #: "none": each candidate's model reads the features; "plus": a prompt-difficulty model
    #: fitted on all candidates' labels at once feeds each candidate's model as one more input
    difficulty: str = "none"
    #: nearest training prompts by embedding, blended in with weight 1 - blend[candidate]
    neighbours: Neighbours | None = None
    blend: dict[str, float] = field(default_factory=dict)

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.feature_spec)

    def cost_vector(self, names: Sequence[str] | None = None) -> np.ndarray:
        return np.array([self.costs[n] for n in (names or self.candidates)], dtype=np.float64)

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """P(good) per candidate (columns in `candidates` order) for feature rows `x`."""
        emb = x[:, len(self.spec.structure) :]
        if self.difficulty != "none":
            x = _with_difficulty(x, _predict(self.models[DIFFICULTY], x), self.difficulty)
        p = np.column_stack([_predict(self.models[c], x) for c in self.candidates])
        if self.neighbours is not None:
            w = np.array([self.blend.get(c, 1.0) for c in self.candidates])
            p = w * p + (1 - w) * self.neighbours.predict(emb)
        return p

    def predict(self, texts: Sequence[str], embed: Embed | None = None) -> np.ndarray:
        return self.predict_features(featurize(texts, self.spec, embed))

    def knob_for(self, policy: Policy, target: float) -> float | None:
        """The calibrated knob of `policy` reaching `target` x the best candidate's quality."""
        curve = self.curves.get(policy)
        if not curve or self.calibration is None:
            return None
        goal = target * self.calibration.best_quality
        points = [Point(k, q, c, {}) for k, q, c in curve]
        hit = cheapest_meeting(points, goal)
        return hit.knob if hit else None

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(
                {"magic": MAGIC, "format_version": self.format_version, "artifact": self}, f, protocol=5
            )


def load_artifact(path: str | Path) -> RouterArtifact:
    """Load and check an artifact: the format version and the scikit-learn it was built with."""
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)  # noqa: S301 - artifacts are files the operator trained
    except FileNotFoundError:
        raise ArtifactError(f"router artifact not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ArtifactError(f"{path}: not a thrifty router artifact ({exc})") from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise ArtifactError(f"{path}: not a thrifty router artifact")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format {payload.get('format_version')} is not {FORMAT_VERSION}; retrain it with this thrifty"
        )
    art = payload["artifact"]
    if not isinstance(art, RouterArtifact):
        raise ArtifactError(f"{path}: not a thrifty router artifact")
    import sklearn

    if _minor(art.sklearn_version) != _minor(sklearn.__version__):
        raise ArtifactError(
            f"{path}: trained with scikit-learn {art.sklearn_version}, this is {sklearn.__version__}; retrain it"
        )
    try:
        art.spec  # noqa: B018 - validates the feature spec
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    return art


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# -- training -------------------------------------------------------------------------------


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(model, float):
        return np.full(len(x), model)
    return np.asarray(model.predict_proba(x)[:, 1])


def _with_difficulty(x: np.ndarray, p: np.ndarray, mode: str) -> np.ndarray:
    logit = np.log(np.clip(p, 1e-4, 1 - 1e-4) / np.clip(1 - p, 1e-4, 1))[:, None]
    return logit if mode == "only" else np.hstack([logit, x])


def _soft_rows(x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graded labels as weighted 0/1 rows: q counts as a success with weight q."""
    if np.all((q == 0) | (q == 1)):
        return x, q.astype(int), np.ones(len(q))
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones(len(q), dtype=int), np.zeros(len(q), dtype=int)])
    ww = np.concatenate([q, 1 - q])
    keep = ww > 0
    return xx[keep], yy[keep], ww[keep]


def _fit(x: np.ndarray, q: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xx, yy, ww = _soft_rows(x, q)
    if len(set(yy.tolist())) < 2:
        return float(q.mean())
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    model.fit(xx, yy, logisticregression__sample_weight=ww)
    return model


def _folds(n: int, k: int, seed: int, repeats: int = 1) -> list[list[np.ndarray]]:
    """`repeats` different k-fold splits of n rows."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        idx = rng.permutation(n)
        out.append([idx[i::k] for i in range(k)])
    return out


def _log_loss(p: np.ndarray, q: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-(q * np.log(p) + (1 - q) * np.log(1 - p)).mean())


def fit_candidate(
    x: np.ndarray, q: np.ndarray, splits: list[list[np.ndarray]], grid: Sequence[float] | None = None
) -> tuple[Any, np.ndarray, float]:
    """Choose C by cross-validated log loss; return (model on all rows, out-of-fold P, C).

    BLAS runs single-threaded: these problems are small, and on a busy machine thread
    hand-offs cost more than the arithmetic."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _fit_candidate(x, q, splits, grid or C_GRID)


def _fit_candidate(
    x: np.ndarray, q: np.ndarray, splits: list[list[np.ndarray]], grid: Sequence[float]
) -> tuple[Any, np.ndarray, float]:
    best: tuple[float, float, np.ndarray] | None = None
    for c in grid:
        # Out-of-fold predictions, averaged over repeated splits to steady the calibration.
        oof = np.zeros(len(q))
        for folds in splits:
            for fold in folds:
                train = np.setdiff1d(np.arange(len(q)), fold)
                oof[fold] += _predict(_fit(x[train], q[train], c), x[fold])
        oof /= len(splits)
        loss = _log_loss(oof, q)
        if best is None or loss < best[0]:
            best = (loss, c, oof)
    assert best is not None
    return _fit(x, q, best[1]), best[2], best[1]


def label_matrices(examples: Sequence[Example], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, cost) matrices (n, k) of the labeled examples for candidates `names`."""
    q = np.array([[ex.candidates[n].quality for n in names] for ex in examples], dtype=np.float64)
    c = np.array([[float(ex.candidates[n].cost) for n in names] for ex in examples], dtype=np.float64)
    return q, c


def calibrate_points(
    p: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    names: Sequence[str],
    expected: np.ndarray,
    target: float,
    policies: Sequence[Policy] = POLICIES,
    source: str = "out-of-fold",
    reference: str | None = None,
    max_cost: float | None = None,
    confidence: float | None = None,
    n_boot: int = 400,
    seed: int = 0,
) -> tuple[Calibration | None, dict[str, list[Point]]]:
    """Sweep each policy and pick the cheapest setting reaching `target` x the quality of
    `reference` (default: the best single candidate).

    `max_cost` caps the setting's cost at that fraction of the reference model's. `confidence`
    asks for a setting that meets the target (and the cap) in at least that share of bootstrap
    resamples of these rows, instead of on the rows themselves. Out of reach: the best quality
    within the cap is kept, marked `met=False`."""
    n = max(len(quality), 1)
    means = quality.mean(axis=0)
    best = list(names).index(reference) if reference else int(np.argmax(means - 1e-12 * cost.sum(axis=0)))
    goal = target * float(means[best])
    budget = None if max_cost is None else max_cost * float(cost[:, best].sum())
    rows = np.arange(len(quality))
    counts = resample_counts(len(quality), n_boot, seed) if len(quality) and n_boot > 0 else None
    curves: dict[str, list[Point]] = {}
    everything: list[tuple[Policy, Point, float | None]] = []
    for pol in policies:
        pts = sweep(p, quality, cost, names, pol, expected)
        curves[pol] = pts
        rates: list[float | None] = [None] * len(pts)
        if confidence is not None and counts is not None:
            chosen = np.column_stack([choose(p, expected, pol, pt.knob) for pt in pts])
            rates = list(
                reach_rates(
                    quality[rows[:, None], chosen],
                    cost[rows[:, None], chosen],
                    quality[:, best],
                    cost[:, best],
                    target,
                    max_cost,
                    counts,
                )
            )
        everything += [(pol, pt, r) for pt, r in zip(pts, rates, strict=True)]
    if not everything:
        return None, curves
    affordable = [t for t in everything if budget is None or t[1].cost <= budget + 1e-12]
    if confidence is None:
        meeting = [t for t in affordable if t[1].quality >= goal - 1e-12]
    else:
        meeting = [t for t in affordable if t[2] is not None and t[2] >= confidence]
    met = bool(meeting)
    if meeting:
        pol, hit, _ = min(meeting, key=lambda t: (t[1].cost, -t[1].quality))
    else:  # out of reach: keep the best quality there is (within the cap), the cheapest such setting
        pol, hit, _ = max(affordable or everything, key=lambda t: (t[1].quality, -t[1].cost))
    reach = None
    if counts is not None:
        chosen = choose(p, expected, pol, hit.knob)
        reach = float(
            reach_rates(
                quality[rows, chosen],
                cost[rows, chosen],
                quality[:, best],
                cost[:, best],
                target,
                max_cost,
                counts,
            )[0]
        )
    cal = Calibration(
        pol,
        hit.knob,
        target,
        hit.quality,
        hit.cost / n,
        float(means[best]),
        float(cost[:, best].sum()) / n,
        source,
        met,
        reference_share=hit.share.get(names[best], 0.0),
        max_cost=max_cost,
        confidence=confidence,
        reach_probability=reach,
    )
    return cal, curves


def _blend_for_target(
    oof: np.ndarray,
    knn_oof: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    names: Sequence[str],
    target: float,
    *,
    reference: str | None,
    max_cost: float | None,
) -> float:
    """The blend weight (one for all candidates) whose out-of-fold calibration meets the target
    cheapest; when none meets it, the one reaching the best quality."""
    expected = cost.mean(axis=0)
    scored: list[tuple[bool, float, float]] = []
    for w in BLEND_GRID:
        cal, _ = calibrate_points(
            w * oof + (1 - w) * knn_oof,
            quality,
            cost,
            names,
            expected,
            target,
            reference=reference,
            max_cost=max_cost,
            n_boot=0,
        )
        if cal is not None:
            scored.append((cal.met, -cal.cost_per_call if cal.met else cal.quality, w))
    return max(scored)[2] if scored else 1.0


def train(
    examples: Sequence[Example],
    *,
    candidates: Sequence[str] | None = None,
    spec: FeatureSpec | None = None,
    embed: Embed | None = None,
    target: float = 0.95,
    reference: str | None = None,
    folds: int = 5,
    repeats: int | None = None,
    seed: int = 0,
    x: np.ndarray | None = None,
    difficulty: str = "none",
    neighbours: int = 50,
    max_cost: float | None = None,
    confidence: float | None = None,
    blend_by: str = "loss",
) -> RouterArtifact:
    """Fit a router on labeled examples and calibrate its knob for `target` on out-of-fold predictions.

    `blend_by` says how the nearest-neighbour vote is weighed in: "loss", per candidate, the
    weight with the lowest out-of-fold log loss; "target", one weight for every candidate, the
    one whose out-of-fold calibration reaches `target` cheapest (what routing pays for is the
    ranking of the candidates against each other, which per-candidate losses do not score)."""
    if blend_by not in BLEND_BY:
        raise ValueError(f"unknown blend_by {blend_by!r}; known: {', '.join(BLEND_BY)}")
    import sklearn

    spec = spec or FeatureSpec()
    names = list(candidates) if candidates else common_candidates(list(examples))
    missing = [n for n in names if any(n not in ex.candidates for ex in examples)]
    if missing:
        raise ValueError(f"candidates missing from some examples: {', '.join(missing)}")
    if len(names) < 2:
        raise ValueError("a router needs at least two candidates present on every example")
    if len(examples) < 2 * folds:
        raise ValueError(f"too few examples to train ({len(examples)}; need at least {2 * folds})")
    feats = x if x is not None else featurize([ex.text for ex in examples], spec, embed)
    quality, cost = label_matrices(examples, names)
    if repeats is None:  # small sets get repeated splits: their calibration is the noisy part
        repeats = max(1, min(5, 3000 // max(len(examples), 1)))
    split = _folds(len(examples), folds, seed, repeats)
    models: dict[str, Any] = {}
    oof = np.zeros_like(quality)
    cv: dict[str, float] = {}
    inputs = feats
    if difficulty != "none":
        # How hard the prompt is, learned from every candidate's label at once (n*k labels,
        # not n): weak candidates fail first on hard prompts. Out-of-fold values train the
        # candidates' models, so they learn how far to trust it.
        models[DIFFICULTY], d_oof, cv[DIFFICULTY] = fit_candidate(feats, quality.mean(axis=1), split)
        inputs = _with_difficulty(feats, d_oof, difficulty)
    for j, name in enumerate(names):
        models[name], oof[:, j], cv[name] = fit_candidate(inputs, quality[:, j], split)
    knn: Neighbours | None = None
    blend: dict[str, float] = {}
    if neighbours > 0 and spec.embedding is not None:
        # Blend in the nearest-neighbour vote where it lowers the out-of-fold log loss.
        emb = feats[:, len(spec.structure) :]
        k = min(neighbours, max(5, len(examples) // 10))
        knn_oof = _neighbour_oof(emb, quality, split, k)
        if blend_by == "target":
            w = _blend_for_target(
                oof, knn_oof, quality, cost, names, target, reference=reference, max_cost=max_cost
            )
            blend = dict.fromkeys(names, w)
        else:
            for j, name in enumerate(names):
                losses = {
                    w: _log_loss(w * oof[:, j] + (1 - w) * knn_oof[:, j], quality[:, j])
                    for w in BLEND_GRID
                }
                blend[name] = min(losses, key=lambda w: losses[w])
        weights = np.array([blend[n] for n in names])
        oof = weights * oof + (1 - weights) * knn_oof
        if any(w < 1.0 for w in blend.values()):
            knn = Neighbours(emb, quality, k)
    expected = cost.mean(axis=0)
    art = RouterArtifact(
        candidates=names,
        feature_spec=spec.to_dict(),
        data_hash=data_hash(examples),
        sklearn_version=sklearn.__version__,
        models=models,
        costs={n: float(c) for n, c in zip(names, expected, strict=True)},
        n_examples=len(examples),
        chosen_c=cv,
        difficulty=difficulty,
        neighbours=knn,
        blend=blend,
    )
    cal, curves = calibrate_points(
        oof,
        quality,
        cost,
        names,
        expected,
        target,
        reference=reference,
        max_cost=max_cost,
        confidence=confidence,
        seed=seed,
    )
    art.calibration = cal
    n = len(examples)
    art.curves = {pol: [(pt.knob, pt.quality, pt.cost / n) for pt in pts] for pol, pts in curves.items()}
    return art


def route(
    art: RouterArtifact, p: np.ndarray, policy: Policy, knob: float, names: Sequence[str] | None = None
) -> list[str]:
    """Candidate names chosen for rows of predictions `p` (columns in `art.candidates` order)."""
    cols = list(names or art.candidates)
    idx = [art.candidates.index(n) for n in cols]
    chosen = choose(p[:, idx], art.cost_vector(cols), policy, knob)
    return [cols[i] for i in chosen]
