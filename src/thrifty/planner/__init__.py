"""The cost planner: what a workload costs on an API with each lever, and what self-hosting costs.

- `catalog`: GPUs (hardware, dated prices with sources) and open-weight model architectures;
- `roofline`: decode bounded by memory bandwidth, prefill by compute, batch bounded by KV memory;
- `calibration`: efficiency factors fitted to published measurements, held-out points kept apart;
- `workload`, `bill`: the API bill and the savings of each lever (the waterfall);
- `selfhost`: GPUs needed at peak, utilization, cost per 1M tokens, break-even, spot for batch;
- `traffic`: a workload measured from the ledger or an audit log instead of guessed;
- `plan`: all of it for one workload, as `thrifty plan` and the dashboard's Plan page show it.
"""

from thrifty.planner.calibration import calibrated
from thrifty.planner.catalog import Catalog, load_catalog
from thrifty.planner.roofline import Deployment, Efficiency

__all__ = ["Catalog", "Deployment", "Efficiency", "calibrated", "load_catalog"]
