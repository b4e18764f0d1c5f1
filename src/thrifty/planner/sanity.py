"""Figures that beat the roofline are flagged, not believed.

Published tables include impossible numbers (a 70B model decoding 120 tokens/s for one stream on
one H100 is 2.5x what its memory bandwidth allows at FP8). A claim of single-stream speed, or a
calibration point, is checked against the pure roofline of its setup: one stream cannot decode
faster than the weights can be read once per token, and no batch can beat the compute bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from thrifty.planner.calibration import Point, predict
from thrifty.planner.catalog import BYTES, Catalog
from thrifty.planner.roofline import ROOFLINE, Deployment


@dataclass(frozen=True)
class Flag:
    what: str
    claimed: float
    bound: float
    message: str


def check_claim(catalog: Catalog, model: str, gpu: str, n_gpus: int, tokens_per_s: float,
                precision: str | None = None) -> Flag | None:  # fmt: skip
    """A claimed single-stream decode speed against the bandwidth bound (at the given precision,
    or at the smallest one, which is the most lenient); a Flag when it is beyond it."""
    m, g = catalog.model(model), catalog.gpu(gpu)
    precisions = [precision] if precision else [min(BYTES, key=lambda p: BYTES[p])]
    d = Deployment(m, g, n_gpus, precisions[0])
    bound = 1 / d.bandwidth_bound_tpot()
    if tokens_per_s <= bound:
        return None
    return Flag(
        what=f"{m.name} on {n_gpus}x{g.key} at {precisions[0]}", claimed=tokens_per_s, bound=bound,
        message=(f"{tokens_per_s:g} tokens/s for one stream is {tokens_per_s / bound:.1f}x the memory-bandwidth bound "
                 f"of {bound:.0f} tokens/s ({d.weight_bytes / n_gpus / 1e9:.0f} GB of weights per GPU read once per "
                 f"token at {g.bandwidth_tbs:g} TB/s): impossible without speculative decoding or batching"),
    )  # fmt: skip


def check_point(p: Point, catalog: Catalog) -> Flag | None:
    """A published point that beats the pure roofline of its own setup."""
    bound = predict(p, ROOFLINE, catalog)
    faster = p.value > bound if p.kind == "output_tps" else p.value < bound
    if not faster:
        return None
    return Flag(
        p.label, p.value, bound, f"{p.series}: published {p.value:g} beats the roofline ({bound:.4g})"
    )


__all__ = ["Flag", "check_claim", "check_point"]
