"""One plan for one workload: the API bill per lever, self-hosting options, and a recommendation.

The recommendation compares the API bill after the levers with the cheapest self-hosting option
that meets the latency target, and can honestly be "stay on the API". It compares cost only:
whether the open-weight model answers as well as the API model is for `thrifty eval` to say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from thrifty.planner.bill import Bill, api_bill
from thrifty.planner.calibration import calibrated, shipped_points
from thrifty.planner.catalog import Catalog, load_catalog
from thrifty.planner.roofline import Efficiency
from thrifty.planner.sanity import Flag, check_point
from thrifty.planner.selfhost import SelfHostPlan, plan_selfhost
from thrifty.planner.workload import PlanError, Workload


@dataclass
class Plan:
    workload: Workload
    bill: Bill
    selfhost: SelfHostPlan | None
    selfhost_error: str | None
    efficiency: Efficiency
    catalog_as_of: str
    flags: list[Flag] = field(default_factory=list)

    @property
    def recommendation(self) -> str:
        api = self.bill.final
        best = self.selfhost.best if self.selfhost else None
        if best is None:
            return f"Stay on the API (${api:,.0f}/month): self-hosting is not possible here: {self.selfhost_error}"
        name = self.selfhost.model.name if self.selfhost else ""
        if best.total >= api:
            be = best.breakeven_requests_per_day
            when = (f"it breaks even only from {be:,.0f} requests/day" if be is not None
                    else "it does not break even at any volume at these prices")  # fmt: skip
            return (f"Stay on the API: ${api:,.0f}/month after levers, against ${best.total:,.0f} for {name} on the "
                    f"cheapest option ({best.label}, {best.gpus_at_peak} GPU(s) at {best.utilization:.0%} mean "
                    f"utilization); {when}.")  # fmt: skip
        return (f"Self-hosting {name} on {best.label} ({best.gpus_at_peak} GPU(s) at peak) costs "
                f"${best.total:,.0f}/month against ${api:,.0f} on the API after levers ({1 - best.total / api:.0%} "
                f"less), if {name} is good enough for this traffic (check with `thrifty eval`).")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.model_dump(), "bill": self.bill.to_dict(),
            "selfhost": self.selfhost.to_dict() if self.selfhost else None, "selfhost_error": self.selfhost_error,
            "efficiency": asdict(self.efficiency), "catalog_as_of": self.catalog_as_of,
            "recommendation": self.recommendation, "flags": [asdict(f) for f in self.flags],
            "assumptions": ASSUMPTIONS,
        }  # fmt: skip


#: What the plan takes for granted, shown with every plan.
ASSUMPTIONS = [
    "a month is 30 days (720 GPU-hours)",
    "API prices from genai-prices unless given; GPU prices from the dated catalog (see its sources)",
    "self-hosted replicas are sized for the peak request rate and run all month (or per hour with an hourly profile)",
    "throughput from the roofline with efficiency factors fitted to published measurements (calibrated)",
    "90% of GPU memory holds weights and KV cache; KV cache at the stated precision",
    "the batch share runs on spot at full throughput, plus the stated overhead for interruptions (assumed)",
    "cost only: the open-weight model's quality against the API model is not compared",
]


def make_plan(w: Workload, catalog: Catalog | None = None, eff: Efficiency | None = None) -> Plan:
    cat = catalog or load_catalog()
    efficiency = eff or calibrated()
    bill = api_bill(w)
    # published calibration/held-out figures that beat their own roofline would poison the fit
    flags = [f for p in shipped_points() if (f := check_point(p, cat)) is not None]
    try:
        sh: SelfHostPlan | None = plan_selfhost(w, bill, cat, efficiency)
        err = None
    except PlanError as exc:
        sh, err = None, str(exc)
    return Plan(w, bill, sh, err, efficiency, cat.as_of, flags)


__all__ = ["ASSUMPTIONS", "Plan", "make_plan"]
