"""Efficiency factors fitted to published serving measurements, and checked on held-out ones.

Calculators that stop at the roofline are 14-31% optimistic on decode, and those that guess a
utilization are off by more. Here the four factors of `Efficiency` (bandwidth fractions for
weights and KV cache, compute fraction, all-reduce latency) are fitted by least squares on the log of predicted / published
for the points of `data/measurements.yaml` marked `split: calibration`. The points marked
`held_out` are never seen by the fit; `benchmarks/planner_accuracy.py` prints the error on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from thrifty.planner.catalog import Catalog, load_catalog
from thrifty.planner.roofline import ROOFLINE, Deployment, Efficiency

KINDS = ("output_tps", "tpot_ms", "ttft_ms", "e2e_ms")


@dataclass(frozen=True)
class Point:
    """One published figure and the setup it was measured on."""

    series: str
    split: str
    kind: str
    model: str
    gpu: str
    n_gpus: int
    precision: str
    kv: str
    input_tokens: int
    output_tokens: int
    concurrency: int | None
    max_batch: int | None
    value: float
    source: str
    engine: str

    @property
    def label(self) -> str:
        conc = "max" if self.concurrency is None else f"c={self.concurrency}"
        return f"{self.model} {self.n_gpus}x{self.gpu} {self.precision} {self.input_tokens}/{self.output_tokens} {conc} {self.kind}"


def load_points(text: str | None = None) -> list[Point]:
    doc = yaml.safe_load(text if text is not None else
                         resources.files("thrifty.planner").joinpath("data/measurements.yaml").read_text())  # fmt: skip
    points = []
    for s in doc["series"]:
        if s["kind"] not in KINDS:
            raise ValueError(f"{s['id']}: unknown kind {s['kind']!r}")
        if s["split"] not in ("calibration", "held_out"):
            raise ValueError(f"{s['id']}: split must be calibration or held_out")
        for isl, osl, value in s["rows"]:
            points.append(Point(
                series=s["id"], split=s["split"], kind=s["kind"], model=s["model"], gpu=s["gpu"],
                n_gpus=int(s["n_gpus"]), precision=s["precision"], kv=s["kv"], input_tokens=int(isl),
                output_tokens=int(osl), concurrency=s.get("concurrency"), max_batch=s.get("max_batch"),
                value=float(value), source=s["source"], engine=s["engine"],
            ))  # fmt: skip
    return points


@lru_cache(maxsize=1)
def shipped_points() -> tuple[Point, ...]:
    """The points of the shipped data file (parsed once per process)."""
    return tuple(load_points())


def deployment_of(p: Point, catalog: Catalog) -> Deployment:
    return Deployment(catalog.model(p.model), catalog.gpu(p.gpu), p.n_gpus, p.precision, p.kv, p.max_batch)


def predict(p: Point, eff: Efficiency, catalog: Catalog | None = None) -> float:
    """The model's figure for the point's setup, in the point's unit."""
    d = deployment_of(p, catalog or load_catalog())
    if p.kind == "output_tps":
        return d.saturation(p.input_tokens, p.output_tokens, eff, p.concurrency)[1]
    if p.kind == "tpot_ms":
        ctx = p.input_tokens + p.output_tokens / 2
        return 1e3 * d.step_time(p.concurrency or 1, ctx, eff)
    if p.kind == "ttft_ms":
        return 1e3 * d.ttft(p.input_tokens, eff)
    # e2e_ms: a batch started together: prefill all prompts, then decode them side by side
    batch = p.concurrency or 1
    prefill = batch * d.prefill_work(p.input_tokens, eff) + d.comm_time(eff)
    decode = sum(d.step_time(batch, p.input_tokens + i, eff) for i in range(p.output_tokens))
    return 1e3 * (prefill + decode)


def log_error(p: Point, eff: Efficiency, catalog: Catalog | None = None) -> float:
    return math.log(predict(p, eff, catalog) / p.value)


def fit(points: list[Point], catalog: Catalog | None = None) -> Efficiency:
    """Least squares on log(predicted / published) over `points` (bounded, deterministic)."""
    from scipy.optimize import least_squares

    cat = catalog or load_catalog()

    def eff_of(x: Any) -> Efficiency:
        return Efficiency(
            bandwidth=float(x[0]),
            kv_bandwidth=float(x[1]),
            compute=float(x[2]),
            allreduce_s=float(x[3]) * 1e-6,
            overlap=False,
        )

    def residuals(x: Any) -> list[float]:
        e = eff_of(x)
        return [log_error(p, e, cat) for p in points]

    result = least_squares(
        residuals, x0=[0.7, 0.5, 0.5, 10.0], bounds=([0.05, 0.05, 0.05, 0.0], [1.0, 1.0, 1.0, 200.0])
    )
    return eff_of(result.x)


@lru_cache(maxsize=1)
def calibrated() -> Efficiency:
    """The factors fitted on the shipped calibration split (computed once per process)."""
    return fit([p for p in shipped_points() if p.split == "calibration"])


@dataclass(frozen=True)
class Accuracy:
    point: Point
    predicted: float
    roofline: float

    @property
    def error(self) -> float:
        return self.predicted / self.point.value - 1

    @property
    def roofline_error(self) -> float:
        return self.roofline / self.point.value - 1


def accuracy(points: list[Point], eff: Efficiency) -> list[Accuracy]:
    return [Accuracy(p, predict(p, eff), predict(p, ROOFLINE)) for p in points]


__all__ = [
    "KINDS",
    "Accuracy",
    "Point",
    "accuracy",
    "calibrated",
    "fit",
    "load_points",
    "predict",
    "shipped_points",
]
