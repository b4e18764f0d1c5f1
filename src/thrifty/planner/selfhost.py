"""What serving the workload on rented GPUs costs, option by option, against the API.

For each GPU of the catalog and each precision it supports, the fewest GPUs (tensor parallel 1,
2, 4 or 8) that hold the weights and meet the latency target make a replica. The replica's batch
is the largest that keeps the time per output token within the target (and within KV memory);
its throughput at that batch sets the replicas needed at the PEAK request rate, and the
utilization at the mean shows what sizing for the peak wastes. The batch share, which can wait,
runs at full throughput on spot capacity, with an overhead for work lost to interruptions.

Impossible workloads get a `PlanError` that says why (no GPU can hold the model; the latency
target is below what any GPU's memory bandwidth allows), never a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from thrifty.planner.bill import Bill
from thrifty.planner.catalog import BYTES, GPU, Catalog, OpenModel
from thrifty.planner.roofline import Deployment, Efficiency
from thrifty.planner.workload import DAYS_PER_MONTH, PlanError, Workload

HOURS_PER_MONTH = 24 * DAYS_PER_MONTH
TP_SIZES = (1, 2, 4, 8)


@dataclass
class Option:
    """One way to self-host: a replica shape, how many, and what they cost a month (USD)."""

    gpu: str
    n_gpus: int
    precision: str
    batch: int
    tpot_ms: float
    ttft_ms: float
    replica_tokens_per_s: float
    replicas: int
    gpus_at_peak: int
    utilization: float
    price_per_gpu_hour: float
    price_kind: str
    interactive_cost: float
    autoscaled_cost: float | None
    batch_gpu_hours: float
    batch_cost: float
    batch_price_kind: str
    total: float
    cost_per_m_output: float
    cost_per_m_tokens: float
    breakeven_requests_per_day: float | None
    price_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.n_gpus}x{self.gpu} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


@dataclass
class Skipped:
    gpu: str
    precision: str
    reason: str


@dataclass
class SelfHostPlan:
    model: OpenModel
    options: list[Option]
    skipped: list[Skipped]

    @property
    def best(self) -> Option | None:
        return min(self.options, key=lambda o: o.total) if self.options else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"key": self.model.key, "name": self.model.name, "params_b": self.model.params_b},
            "options": [o.to_dict() for o in sorted(self.options, key=lambda o: o.total)],
            "skipped": [asdict(s) for s in self.skipped],
        }


def _replica(model: OpenModel, gpu: GPU, precision: str, w: Workload, tokens: tuple[float, float],
             eff: Efficiency) -> tuple[Deployment, int] | str:  # fmt: skip
    """The smallest tensor-parallel replica meeting the latency target, with its batch; or why not."""
    sh = w.selfhost
    i_tok, o_tok = tokens
    target = w.latency_ms / 1e3
    why = "the weights do not fit on 8 GPUs"
    for n in TP_SIZES:
        d = Deployment(model, gpu, n, precision, sh.kv_precision, sh.max_batch)
        if not d.fits(i_tok + o_tok):
            continue
        batch = d.batch_for_latency(target, i_tok, o_tok, eff)
        if batch >= 1:
            return d, batch
        why = f"a single stream takes {1e3 * d.tpot(1, i_tok, o_tok, eff):.1f} ms/token on {n} GPUs, over the {w.latency_ms:g} ms target"
    return why


def plan_selfhost(w: Workload, bill: Bill, catalog: Catalog, eff: Efficiency) -> SelfHostPlan:
    model = catalog.model(w.selfhost.model)
    gpus = [catalog.gpu(g) for g in (w.selfhost.gpus or list(catalog.gpus))]
    for p in w.selfhost.precisions:
        if p not in BYTES:
            raise PlanError(f"selfhost.precisions: unknown precision {p!r} (one of {', '.join(BYTES)})")
    i_tok, o_tok = max(bill.input_tokens, 1.0), max(bill.output_tokens, 1.0)
    reach = bill.requests_per_month / w.requests_per_month if w.requests_per_month else 1.0
    share = w.levers.batch_share
    month_rps = bill.requests_per_month / (DAYS_PER_MONTH * 86400)
    peak_rps = month_rps * w.peak_ratio * (1 - share)
    api_per_request = bill.final / w.requests_per_month
    options: list[Option] = []
    skipped: list[Skipped] = []
    for gpu in gpus:
        price = gpu.price(w.selfhost.price) or gpu.price("on_demand")
        for precision in w.selfhost.precisions:
            if not gpu.supports(precision):
                skipped.append(Skipped(gpu.key, precision, f"{gpu.key} has no {precision} tensor cores"))
                continue
            if price is None:
                skipped.append(Skipped(gpu.key, precision, "the catalog has no price for this GPU"))
                continue
            found = _replica(model, gpu, precision, w, (i_tok, o_tok), eff)
            if isinstance(found, str):
                skipped.append(Skipped(gpu.key, precision, found))
                continue
            d, batch = found
            notes: list[str] = []
            tok_s = d.throughput(batch, i_tok, o_tok, eff)
            rps = tok_s / o_tok
            replicas = math.ceil(peak_rps / rps - 1e-9) if peak_rps > 0 else 0
            replicas = max(replicas, 1 if share < 1 else 0)
            gpus_peak = replicas * d.n_gpus
            mean_rps = month_rps * (1 - share)
            util = mean_rps / (replicas * rps) if replicas else 0.0
            per_gpu = price.usd
            kind = w.selfhost.price if gpu.price(w.selfhost.price) else "on_demand"
            if kind != w.selfhost.price:
                notes.append(f"no {w.selfhost.price} price for {gpu.key}: on-demand used")
            interactive = gpus_peak * per_gpu * HOURS_PER_MONTH
            autoscaled = None
            if w.hourly is not None and share < 1:
                hours = [max(1, math.ceil(r * reach * (1 - share) / rps - 1e-9)) for r in w.hourly_rps()]
                autoscaled = sum(hours) * d.n_gpus * per_gpu * DAYS_PER_MONTH
            # the batch share: full-throughput batches on spot, plus the interruption overhead
            _, sat_tok = d.saturation(i_tok, o_tok, eff)
            batch_requests = bill.requests_per_month * share
            spot = gpu.price("spot")
            batch_price = spot or price
            if share > 0 and spot is None:
                notes.append(f"no spot price for {gpu.key}: the batch share is priced on-demand")
            gpu_hours = 0.0
            if batch_requests > 0 and sat_tok > 0:
                gpu_hours = (
                    batch_requests * o_tok / sat_tok / 3600 * d.n_gpus * (1 + w.selfhost.spot_overhead)
                )
            batch_cost = gpu_hours * batch_price.usd
            total = (autoscaled if autoscaled is not None else interactive) + batch_cost
            out_tokens = bill.requests_per_month * o_tok
            all_tokens = bill.requests_per_month * (i_tok + o_tok)
            # break-even: the API cost per request (after levers) against one replica's day, sized
            # for the peak; none when even a full replica costs more per request than the API
            cap_per_day = rps * 86400 / w.peak_ratio / max(reach, 1e-9)
            day_cost = d.n_gpus * per_gpu * 24
            breakeven = day_cost / api_per_request if api_per_request * cap_per_day >= day_cost > 0 else None
            options.append(Option(
                gpu=gpu.key, n_gpus=d.n_gpus, precision=precision, batch=batch,
                tpot_ms=1e3 * d.tpot(batch, i_tok, o_tok, eff), ttft_ms=1e3 * d.ttft(i_tok, eff),
                replica_tokens_per_s=tok_s, replicas=replicas, gpus_at_peak=gpus_peak, utilization=util,
                price_per_gpu_hour=per_gpu, price_kind=kind, interactive_cost=interactive,
                autoscaled_cost=autoscaled, batch_gpu_hours=gpu_hours, batch_cost=batch_cost,
                batch_price_kind="spot" if spot else kind, total=total,
                cost_per_m_output=total / out_tokens * 1e6 if out_tokens else 0.0,
                cost_per_m_tokens=total / all_tokens * 1e6 if all_tokens else 0.0,
                breakeven_requests_per_day=breakeven, price_source=f"{price.source} ({price.date})", notes=notes,
            ))  # fmt: skip
    if not options:
        raise PlanError(_why_impossible(model, gpus, w, skipped, (i_tok, o_tok)))
    return SelfHostPlan(model, options, skipped)


def _why_impossible(model: OpenModel, gpus: list[GPU], w: Workload, skipped: list[Skipped],
                    tokens: tuple[float, float]) -> str:  # fmt: skip
    """The clearest reason no option exists."""
    usable = [(p, g) for g in gpus for p in w.selfhost.precisions if g.supports(p)]
    if not usable:
        return "no GPU of the catalog supports the requested precisions"
    fits = [
        (p, g) for p, g in usable if Deployment(model, g, 8, p, w.selfhost.kv_precision).fits(sum(tokens))
    ]
    if not fits:
        smallest = min(BYTES[p] for p, _ in usable)
        biggest = max(g.memory_gb for _, g in usable)
        return (f"{model.name} needs {model.params_b * smallest:.0f} GB for its weights even at the smallest "
                f"precision asked for, more than 8 x {biggest:g} GB GPUs hold (at 90% use) with room for a "
                f"{sum(tokens):.0f}-token sequence: no GPU of the catalog can serve it")  # fmt: skip
    bounds = [Deployment(model, g, 8, p).bandwidth_bound_tpot() for p, g in fits]
    fastest = min(bounds)
    if w.latency_ms / 1e3 < fastest:
        return (f"the latency target of {w.latency_ms:g} ms per output token is below the single-token bound: "
                f"reading {model.name}'s weights once takes at least {1e3 * fastest:.2f} ms on the fastest option "
                f"(8 GPUs, full bandwidth), so no GPU can meet it")  # fmt: skip
    return "no option meets the workload: " + "; ".join(
        f"{s.gpu} {s.precision}: {s.reason}" for s in skipped[:6]
    )


__all__ = ["HOURS_PER_MONTH", "Option", "SelfHostPlan", "Skipped", "plan_selfhost"]
