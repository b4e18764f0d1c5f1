"""Cascades that read the answers, trained and evaluated offline on recorded answers.

A cascade config is a list of stages, each a set of models called at once; the pool of a stage
is every answer gathered so far. After each stage but the last, a `SignalScorer` gives every
answer of the pool a P(good) from its signals (`thrifty.routing.signals`); the best answer is
served when its P(good) clears the accept threshold (the knob), else the next stage is called.
The last stage's answer is always served (the best of its pool when it has several models).

Everything is simulated from labeled data with recorded responses (RouterBench records 11
models' answers per prompt, RouteLLM's GSM8K both models'): a prompt that stops at stage s pays
for every model of stages 0..s, extra answers included, so the curve counts what each sample
costs. The curve, the table, the plot and the calibration are the router's
(`thrifty.routing.evaluate`), so `thrifty router eval` / `calibrate` read a cascade artifact the
same way they read a router.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.routing.evaluate import Report, apgr, oracle_choice
from thrifty.routing.features import Embed, FeatureSpec, featurize
from thrifty.routing.labeled import Example, data_hash
from thrifty.routing.learned import (
    ArtifactError,
    Calibration,
    _folds,
    _predict,
    fit_candidate,
    label_matrices,
)
from thrifty.routing.policy import Point, cheapest_meeting, outcome
from thrifty.routing.signals import (
    KINDS,
    Answer,
    PoolSignals,
    SignalScorer,
    answer_kind,
    pool_features,
    pool_signals,
)
from thrifty.routing.uncertainty import reach_rates, resample_counts

__all__ = [
    "CascadeArtifact",
    "CascadeConfig",
    "SignalCache",
    "calibrate_cascade",
    "calibrate_on",
    "evaluate_cascade",
    "is_cascade_artifact",
    "load_cascade",
    "parse_stages",
    "recorded_signals",
    "simulate",
    "train_cascade",
]

MAGIC = "thrifty-cascade"
FORMAT_VERSION = 2  # 2: more numeric signals, the "choice" kind, boosted scorers
KNOBS = np.round(np.linspace(0.0, 1.0, 401), 4)
SCORER_C = (0.01, 0.1, 1.0)
#: the scorer families a stage may use; `_fit_stage` keeps the one with the lower out-of-fold log loss
SCORERS: tuple[str, ...] = ("logistic", "boosted")
#: how the accept threshold is chosen (see `calibrate_cascade`)
POLICIES: tuple[str, ...] = ("cheapest", "likeliest")


@dataclass
class CascadeConfig:
    """Stages of models, cheapest first; `kind` says how answers are compared (see signals)."""

    stages: list[list[str]]
    kind: str = "auto"

    def __post_init__(self) -> None:
        if len(self.stages) < 2 or any(not s for s in self.stages):
            raise ValueError("a cascade needs at least two non-empty stages")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known: {', '.join(KINDS)}")
        flat = [m for s in self.stages for m in s]
        if len(set(flat)) != len(flat):
            raise ValueError("a model may appear in one stage only")

    @property
    def models(self) -> list[str]:
        return [m for s in self.stages for m in s]

    def pool(self, stage: int) -> list[str]:
        """The answers gathered once `stage` has been called."""
        return [m for s in self.stages[: stage + 1] for m in s]

    def describe(self) -> str:
        return " > ".join("+".join(s) for s in self.stages)


def parse_stages(spec: str) -> list[list[str]]:
    """'a,b,c>d' -> [[a, b, c], [d]]."""
    return [[m.strip() for m in part.split(",") if m.strip()] for part in spec.split(">")]


SignalCache = dict[tuple[str, tuple[str, ...]], PoolSignals]


def recorded_signals(
    examples: Sequence[Example], pool: Sequence[str], kind: str = "auto", cache: SignalCache | None = None
) -> list[PoolSignals]:
    """The signals of each example's recorded answers of `pool` (code runs in the sandbox; the
    `cache`, keyed by example and pool, keeps what was computed for a re-run)."""
    cache = cache if cache is not None else {}
    key_pool = (*pool, f"kind={kind}")

    def key(ex: Example) -> str:  # the id and a digest of what the signals read: a stale entry never matches
        texts = [ex.text] + [ex.candidates[m].response or "" for m in pool]
        return f"{ex.id}:{hashlib.sha256(chr(0).join(texts).encode()).hexdigest()[:16]}"

    todo = [ex for ex in examples if (key(ex), key_pool) not in cache]

    async def run() -> None:
        for ex in todo:
            answers = [Answer(m, ex.candidates[m].response, ex.candidates[m].mean_logprob) for m in pool]
            cache[(key(ex), key_pool)] = await pool_signals(answers, kind, ex.text)

    if todo:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: called from synchronous code
            asyncio.run(run())
        else:  # called from a coroutine: run the sandbox calls on a loop of their own
            with concurrent.futures.ThreadPoolExecutor(1) as pool_:
                pool_.submit(asyncio.run, run()).result()
    return [cache[(key(ex), key_pool)] for ex in examples]


def _stage_features(
    examples: Sequence[Example],
    config: CascadeConfig,
    pool: Sequence[str],
    sigs: Sequence[PoolSignals],
    weights: Sequence[float],
    prior: np.ndarray | None,
) -> np.ndarray:
    """(n, len(pool), features); `prior` (n, len(config.models)) is the prompt-only P(good)."""
    last = len(config.models) - 1
    return np.stack(
        [
            pool_features(
                [Answer(m, ex.candidates[m].response, ex.candidates[m].mean_logprob) for m in pool],
                sig,
                pool,
                weights,
                prompt=ex.text,
                prior=None if prior is None else [(float(prior[i, j]), float(prior[i, last])) for j in range(len(pool))],
            )
            for i, (ex, sig) in enumerate(zip(examples, sigs, strict=True))
        ]
    )


def _fit_boosted(x: np.ndarray, q: np.ndarray) -> Any:
    """Gradient-boosted trees: they can weigh one signal differently depending on another, which
    a logistic regression cannot. Shallow and slow-learning: a stage has a few hundred prompts."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from thrifty.routing.learned import _soft_rows

    xx, yy, ww = _soft_rows(x, q)
    if len(set(yy.tolist())) < 2:
        return float(q.mean())
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.03, max_depth=3, min_samples_leaf=20, l2_regularization=1.0, random_state=0
    )
    model.fit(xx, yy, sample_weight=ww)
    return model


def _fit_stage(
    x: np.ndarray, q: np.ndarray, splits: list[list[np.ndarray]], scorers: Sequence[str] = SCORERS
) -> tuple[Any, np.ndarray, float, str]:
    """The stage's scorer over every (prompt, answer) row, folds grouping a prompt's rows: a
    logistic regression (C by cross-validation) or gradient-boosted trees, whichever has the
    lower out-of-fold log loss. Returns (model, out-of-fold P, C, which)."""
    from threadpoolctl import threadpool_limits

    from thrifty.routing.learned import _log_loss

    n, k, f = x.shape
    rows = [[(fold[:, None] * k + np.arange(k)[None, :]).ravel() for fold in folds] for folds in splits]
    xf, qf = x.reshape(n * k, f), q.reshape(n * k)
    best: tuple[float, Any, np.ndarray, float, str] | None = None
    if "logistic" in scorers:
        model, oof, c = fit_candidate(xf, qf, rows, SCORER_C)
        best = (_log_loss(oof, qf), model, oof, c, "logistic")
    if "boosted" in scorers:
        with threadpool_limits(1):
            oof = np.zeros(len(qf))
            for folds in rows:
                for fold in folds:
                    train = np.setdiff1d(np.arange(len(qf)), fold)
                    oof[fold] += _predict(_fit_boosted(xf[train], qf[train]), xf[fold])
            oof /= len(rows)
            loss = _log_loss(oof, qf)
            if best is None or loss < best[0]:
                best = (loss, _fit_boosted(xf, qf), oof, 0.0, "boosted")
    if best is None:
        raise ValueError(f"no scorer among {list(scorers)}; known: {', '.join(SCORERS)}")
    _, model, oof, c, which = best
    return model, oof.reshape(n, k), c, which


def simulate(
    stage_p: Sequence[np.ndarray], config: CascadeConfig, quality: np.ndarray, cost: np.ndarray, knob: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(served model index into config.models, stop stage, cost paid) per row.

    `stage_p[s]` (n, len(pool(s))) is every answer's P(good) after stage s (the last stage's
    may be None-like ones: a one-model last stage always serves its answer). `quality` and
    `cost` have one column per config.models."""
    n = len(quality)
    last = len(config.stages) - 1
    served = np.zeros(n, dtype=int)
    stop = np.full(n, last)
    paid = np.zeros(n)
    open_ = np.ones(n, dtype=bool)
    start = 0
    for s, stage in enumerate(config.stages):
        width = start + len(stage)
        paid[open_] += cost[open_, start:width].sum(axis=1)
        p = stage_p[s]
        best = np.argmax(p, axis=1)
        take = open_ & ((p[np.arange(n), best] >= knob) if s < last else True)
        served[take] = best[take]
        stop[take] = s
        open_ &= ~take
        start = width
    return served, stop, paid


def _points(
    stage_p: Sequence[np.ndarray], config: CascadeConfig, quality: np.ndarray, cost: np.ndarray
) -> tuple[list[Point], np.ndarray, np.ndarray]:
    """Every knob's outcome, and the (n, knobs) served quality and cost for the bootstrap."""
    names = config.models
    pts: list[Point] = []
    rq = np.zeros((len(quality), len(KNOBS)))
    rc = np.zeros_like(rq)
    rows = np.arange(len(quality))
    for j, t in enumerate(KNOBS):
        served, _, paid = simulate(stage_p, config, quality, cost, float(t))
        rq[:, j] = quality[rows, served]
        rc[:, j] = paid
        counts = np.bincount(served, minlength=len(names)) / max(len(served), 1)
        pts.append(
            Point(
                float(t),
                float(rq[:, j].mean()),
                float(paid.sum()),
                {m: float(c) for m, c in zip(names, counts, strict=True)},
            )
        )
    return pts, rq, rc


def _last_p(n: int, config: CascadeConfig) -> np.ndarray:
    width = len(config.pool(len(config.stages) - 1))
    p = np.zeros((n, width))
    p[:, width - 1] = 1.0  # a one-model last stage: its own answer
    return p


def calibrate_cascade(
    pts: list[Point],
    rq: np.ndarray,
    rc: np.ndarray,
    quality_ref: np.ndarray,
    cost_ref: np.ndarray,
    target: float,
    *,
    max_cost: float | None = None,
    confidence: float | None = None,
    reference: str = "",
    source: str = "out-of-fold",
    seed: int = 0,
    policy: str = "cheapest",
) -> Calibration:
    """The cheapest accept threshold reaching `target` x the reference's quality (within
    `max_cost` x its cost); out of reach: the best quality within the cap.

    `policy="likeliest"` (with `max_cost`) keeps instead, of the thresholds that meet both, the
    one meeting them in the most bootstrap resamples of the calibration rows (the cheapest of
    those tied): the cheapest one sits on the edge of the target, so it misses it on fresh data
    about half the time, while the likeliest spends what the cap leaves on a margin."""
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; known: {', '.join(POLICIES)}")
    n = max(len(rq), 1)
    goal = target * float(quality_ref.mean())
    budget = None if max_cost is None else max_cost * float(cost_ref.sum())
    counts = resample_counts(len(rq), 400, seed)
    rates = reach_rates(rq, rc, quality_ref, cost_ref, target, max_cost, counts)
    cand = [(pt, float(r)) for pt, r in zip(pts, rates, strict=True)]
    affordable = [c for c in cand if budget is None or c[0].cost <= budget + 1e-12]
    if confidence is None:
        meeting = [c for c in affordable if c[0].quality >= goal - 1e-12]
    else:
        meeting = [c for c in affordable if c[1] >= confidence]
    if meeting and policy == "likeliest" and max_cost is not None:
        top = max(c[1] for c in meeting)
        hit, rate = min((c for c in meeting if c[1] >= top - 1e-12), key=lambda c: (c[0].cost, -c[0].quality))
    elif meeting:
        hit, rate = min(meeting, key=lambda c: (c[0].cost, -c[0].quality))
    else:
        hit, rate = max(affordable or cand, key=lambda c: (c[0].quality, -c[0].cost))
    return Calibration(
        "threshold",
        hit.knob,
        target,
        hit.quality,
        hit.cost / n,
        float(quality_ref.mean()),
        float(cost_ref.sum()) / n,
        source,
        bool(meeting),
        reference_share=hit.share.get(reference, 0.0),
        max_cost=max_cost,
        confidence=confidence,
        reach_probability=rate,
    )


@dataclass
class CascadeArtifact:
    """What `thrifty router train --cascade` writes and a route's `cascade.signals` loads."""

    config: CascadeConfig
    scorers: list[SignalScorer]  # one per stage but the last
    reference: str
    data_hash: str
    sklearn_version: str
    n_examples: int
    costs: dict[str, float]
    kind: str = "cascade"
    format_version: int = FORMAT_VERSION
    created: float = field(default_factory=time.time)
    calibration: Calibration | None = None
    #: the out-of-fold curve: (knob, quality, cost per call)
    curve: list[tuple[float, float, float]] = field(default_factory=list)
    #: prompt-only models P(good) per config model (the router's features), when the scorers read them
    prior_models: dict[str, Any] | None = None
    prior_spec: dict[str, Any] | None = None

    def prior(self, texts: Sequence[str], embed: Embed | None = None) -> np.ndarray | None:
        """(n, len(config.models)) prompt-only P(good), or None when the scorers do not use it."""
        if self.prior_models is None or self.prior_spec is None:
            return None
        x = featurize(texts, FeatureSpec.from_dict(self.prior_spec), embed)
        return np.column_stack([_predict(self.prior_models[m], x) for m in self.config.models])

    @property
    def candidates(self) -> list[str]:
        return self.config.models

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            pickle.dump({"magic": MAGIC, "format_version": FORMAT_VERSION, "artifact": self}, f, protocol=5)

    def stage_p(
        self, examples: Sequence[Example], cache: SignalCache | None = None, embed: Embed | None = None
    ) -> list[np.ndarray]:
        """Every answer's P(good) after each stage, from the recorded answers of `examples`."""
        out = []
        prior = self.prior([ex.text for ex in examples], embed)
        for s, scorer in enumerate(self.scorers):
            pool = self.config.pool(s)
            sigs = recorded_signals(examples, pool, self.config.kind, cache)
            x = _stage_features(examples, self.config, pool, sigs, scorer.weights, prior)
            n, k, f = x.shape
            out.append(scorer.predict(x.reshape(n * k, f)).reshape(n, k))
        last = self.config.stages[-1]
        if len(last) == 1:
            out.append(_last_p(len(examples), self.config))
        return out


def is_cascade_artifact(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)  # noqa: S301 - artifacts are files the operator trained
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return False
    return isinstance(payload, dict) and payload.get("magic") == MAGIC


def load_cascade(path: str | Path) -> CascadeArtifact:
    """Load a cascade artifact, checking its format and scikit-learn version."""
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)  # noqa: S301 - artifacts are files the operator trained
    except FileNotFoundError:
        raise ArtifactError(f"cascade artifact not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ArtifactError(f"{path}: not a thrifty cascade artifact ({exc})") from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise ArtifactError(f"{path}: not a thrifty cascade artifact")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: cascade artifact format {payload.get('format_version')} is not {FORMAT_VERSION}")
    art = payload["artifact"]
    import sklearn

    if not isinstance(art, CascadeArtifact):
        raise ArtifactError(f"{path}: not a thrifty cascade artifact")
    if art.sklearn_version.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ArtifactError(
            f"{path}: trained with scikit-learn {art.sklearn_version}, this is {sklearn.__version__}; retrain it"
        )
    return art


def _usable(examples: Sequence[Example], models: Sequence[str]) -> list[Example]:
    return [
        ex for ex in examples if all(m in ex.candidates and ex.candidates[m].response is not None for m in models[:-1])
        and all(m in ex.candidates for m in models)
    ]


def train_cascade(
    examples: Sequence[Example],
    config: CascadeConfig,
    *,
    reference: str | None = None,
    target: float = 1.0,
    max_cost: float | None = None,
    confidence: float | None = None,
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    cache: SignalCache | None = None,
    prior: bool = False,
    embed: Embed | None = None,
    x_prompt: np.ndarray | None = None,
    scorer_families: Sequence[str] = SCORERS,
    policy: str = "cheapest",
) -> tuple[CascadeArtifact, list[np.ndarray]]:
    """Fit each stage's scorer and calibrate the accept threshold on out-of-fold predictions.

    With `prior`, a prompt-only model per config model (the router's features: MiniLM and
    structure; `x_prompt` may hold them) feeds the scorers its out-of-fold P(good), and is kept
    in the artifact for serving. `repeats` different fold splits average the out-of-fold P(good)
    (a steadier curve to calibrate on); `scorer_families` are the scorers each stage may use;
    `policy` how the threshold is chosen (see `calibrate_cascade`). Returns the artifact and the
    out-of-fold P(good) per stage."""
    import sklearn

    usable = _usable(examples, config.models)
    if x_prompt is not None and len(usable) < len(examples):
        keep = {id(ex) for ex in usable}
        x_prompt = x_prompt[[i for i, ex in enumerate(examples) if id(ex) in keep]]
    if len(usable) < 2 * folds:
        raise ValueError(f"too few examples with recorded answers of {config.describe()} ({len(usable)})")
    if config.kind == "auto":  # one kind for every prompt: the features of each kind differ
        kinds = [answer_kind([ex.candidates[m].response for m in config.stages[0]]) for ex in usable]
        config = dataclasses.replace(config, kind=max(set(kinds), key=kinds.count))
    reference = reference or config.stages[-1][-1]
    if any(reference not in ex.candidates for ex in usable):
        raise ValueError(f"the reference model {reference!r} is missing from some examples")
    quality, cost = label_matrices(usable, config.models)
    weights_all = quality.mean(axis=0)
    split = _folds(len(usable), folds, seed, repeats)
    prior_models: dict[str, Any] | None = None
    prior_oof: np.ndarray | None = None
    spec = FeatureSpec()
    if prior:
        xp = x_prompt if x_prompt is not None else featurize([ex.text for ex in usable], spec, embed)
        prior_models, cols = {}, []
        for j, m in enumerate(config.models):
            prior_models[m], col, _ = fit_candidate(xp, quality[:, j], split)
            cols.append(col)
        prior_oof = np.column_stack(cols)
    scorers: list[SignalScorer] = []
    oof: list[np.ndarray] = []
    n_scored = len(config.stages) - 1 if len(config.stages[-1]) == 1 else len(config.stages)
    for s in range(n_scored):
        pool = config.pool(s)
        w = [float(weights_all[config.models.index(m)]) for m in pool]
        sigs = recorded_signals(usable, pool, config.kind, cache)
        x = _stage_features(usable, config, pool, sigs, w, prior_oof)
        model, p, c, which = _fit_stage(x, quality[:, : len(pool)], split, scorer_families)
        scorers.append(SignalScorer(pool, sigs[0].kind if sigs else config.kind, model, w, c, prior, which))
        oof.append(p)
    if n_scored < len(config.stages):
        oof.append(_last_p(len(usable), config))
    qref, cref = label_matrices(usable, [reference])
    pts, rq, rc = _points(oof, config, quality, cost)
    cal = calibrate_cascade(
        pts, rq, rc, qref[:, 0], cref[:, 0], target, max_cost=max_cost, confidence=confidence,
        reference=reference, seed=seed, policy=policy,
    )
    n = len(usable)
    art = CascadeArtifact(
        config=config,
        scorers=scorers,
        reference=reference,
        data_hash=data_hash(usable),
        sklearn_version=sklearn.__version__,
        n_examples=n,
        costs={m: float(v) for m, v in zip(config.models, cost.mean(axis=0), strict=True)},
        calibration=cal,
        curve=[(pt.knob, pt.quality, pt.cost / n) for pt in pts],
        prior_models=prior_models,
        prior_spec=spec.to_dict() if prior else None,
    )
    return art, oof


def evaluate_cascade(
    art: CascadeArtifact,
    examples: Sequence[Example],
    *,
    knob: float | None = None,
    cache: SignalCache | None = None,
    stage_p: Sequence[np.ndarray] | None = None,
    embed: Embed | None = None,
) -> Report:
    """The cascade's curve (every accept threshold) against each model of the config alone,
    random routing and the oracle, on labeled data with recorded answers."""
    names = art.config.models
    usable = _usable(examples, names)
    if len(usable) < len(examples):
        raise ValueError(
            f"{len(examples) - len(usable)} example(s) lack a recorded answer of a model of {art.config.describe()}"
        )
    quality, cost = label_matrices(usable, names)
    sp = list(stage_p) if stage_p is not None else art.stage_p(usable, cache, embed)
    pts, _, _ = _points(sp, art.config, quality, cost)
    singles = {m: outcome(np.full(len(usable), j), quality, cost, names) for j, m in enumerate(names)}
    oracle = outcome(oracle_choice(quality, cost), quality, cost, names)
    strong = art.reference if art.reference in singles else max(names, key=lambda m: singles[m].quality)
    weak = min(names, key=lambda m: (singles[m].cost, -singles[m].quality))
    ws, ss = singles[weak], singles[strong]
    k = knob if knob is not None else (art.calibration.knob if art.calibration else None)
    calibrated = None
    if k is not None:
        served, _, paid = simulate(sp, art.config, quality, cost, k)
        calibrated = outcome(served, quality, cost, names, k)
        calibrated.cost = float(paid.sum())
    rand = [
        Point(float(a), (1 - a) * ws.quality + a * ss.quality, (1 - a) * ws.cost + a * ss.cost, {weak: 1 - a, strong: a})
        for a in np.linspace(0, 1, 21)
    ]
    return Report(
        names=names,
        n=len(usable),
        singles=singles,
        oracle=oracle,
        weak=weak,
        strong=strong,
        curves={"cascade": pts},
        calibrated=calibrated,
        calibrated_policy="cascade accept" if calibrated is not None else None,
        apgr={"cascade": apgr(pts, ws, ss), "random": apgr(rand, ws, ss)},
        reach={f: cheapest_meeting(pts, f * ss.quality) for f in (0.95, 0.99, 1.0)},
        random=rand,
    )


def calibrate_on(
    art: CascadeArtifact,
    examples: Sequence[Example],
    target: float,
    *,
    max_cost: float | None = None,
    confidence: float | None = None,
    cache: SignalCache | None = None,
    embed: Embed | None = None,
) -> Calibration:
    """The accept threshold meeting `target` on validation data (the router's `calibrate`)."""
    usable = _usable(examples, art.config.models)
    quality, cost = label_matrices(usable, art.config.models)
    qref, cref = label_matrices(usable, [art.reference])
    pts, rq, rc = _points(art.stage_p(usable, cache, embed), art.config, quality, cost)
    return calibrate_cascade(
        pts, rq, rc, qref[:, 0], cref[:, 0], target, max_cost=max_cost, confidence=confidence,
        reference=art.reference, source="validation",
    )
