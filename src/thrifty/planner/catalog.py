"""The planner's facts: GPUs (hardware and dated prices) and open-weight model architectures.

They live in YAML files beside this module (`data/gpus.yaml`, `data/models.yaml`) rather than in
code, because prices change monthly and every team rents from someone else: the files say where
each figure came from and when, and `thrifty plan --catalog FILE` swaps in an edited copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: Bytes per weight (or per KV element) of each precision. int4/fp4 ignore the small overhead of
#: their group scales (about 3% at group size 128).
BYTES = {"fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}

#: The tensor-core path each weight precision computes on. int4 is weight-only (W4A16): it saves
#: memory and bandwidth but computes in 16 bits.
COMPUTE = {"fp16": "fp16", "fp8": "fp8", "int8": "int8", "int4": "fp16", "fp4": "fp4"}

PRICE_KINDS = ("on_demand", "spot", "reserved")


@dataclass(frozen=True)
class Price:
    usd: float
    source: str
    date: str


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    memory_gb: float
    bandwidth_tbs: float
    tflops: dict[str, float]
    hardware_source: str
    #: GPU-to-GPU bandwidth, GB/s in both directions together
    interconnect_gbs: float = 64.0
    prices: dict[str, Price | None] = field(default_factory=dict)

    def supports(self, precision: str) -> bool:
        return COMPUTE[precision] in self.tflops

    def flops(self, precision: str) -> float:
        """Dense FLOP/s of the tensor-core path `precision` computes on."""
        return self.tflops[COMPUTE[precision]] * 1e12

    @property
    def bandwidth(self) -> float:
        """Bytes/s."""
        return self.bandwidth_tbs * 1e12

    @property
    def memory(self) -> float:
        """Bytes."""
        return self.memory_gb * 1e9

    def price(self, kind: str) -> Price | None:
        return self.prices.get(kind)


@dataclass(frozen=True)
class OpenModel:
    """A dense decoder-only transformer, as far as serving cost is concerned."""

    key: str
    name: str
    params_b: float
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    source: str = ""

    @property
    def hidden(self) -> int:
        """The residual width, which tensor parallelism all-reduces (heads x head_dim in these models)."""
        return self.heads * self.head_dim

    @property
    def params(self) -> float:
        return self.params_b * 1e9

    def weight_bytes(self, precision: str) -> float:
        return self.params * BYTES[precision]

    def kv_bytes_per_token(self, kv_precision: str) -> float:
        """K and V of every layer for one token; GQA stores kv_heads, not heads."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES[kv_precision]

    def flops_per_token(self, context: float) -> float:
        """Forward FLOPs for one token attending to `context` earlier tokens: 2 per weight, plus
        the attention scores and the weighted sum (2 x 2 x heads x head_dim per earlier token and layer)."""
        return 2 * self.params + 4 * self.layers * self.heads * self.head_dim * context


@dataclass(frozen=True)
class Catalog:
    gpus: dict[str, GPU]
    models: dict[str, OpenModel]
    as_of: str

    def gpu(self, key: str) -> GPU:
        try:
            return self.gpus[key]
        except KeyError:
            raise KeyError(f"unknown GPU {key!r}; the catalog has {', '.join(self.gpus)}") from None

    def model(self, key: str) -> OpenModel:
        try:
            return self.models[key]
        except KeyError:
            raise KeyError(
                f"unknown open-weight model {key!r}; the catalog has {', '.join(self.models)}"
            ) from None


def _data(name: str) -> str:
    return resources.files("thrifty.planner").joinpath(f"data/{name}").read_text()


def _price(raw: Any) -> Price | None:
    if raw is None:
        return None
    return Price(usd=float(raw["usd"]), source=str(raw["source"]), date=str(raw["date"]))


def parse_gpus(doc: dict[str, Any]) -> dict[str, GPU]:
    out = {}
    for key, g in (doc.get("gpus") or {}).items():
        prices = {kind: _price((g.get("prices") or {}).get(kind)) for kind in PRICE_KINDS}
        out[str(key)] = GPU(
            key=str(key), name=str(g.get("name", key)), memory_gb=float(g["memory_gb"]),
            bandwidth_tbs=float(g["bandwidth_tbs"]), tflops={k: float(v) for k, v in g["tflops"].items()},
            hardware_source=str(g.get("hardware_source", "")),
            interconnect_gbs=float(g.get("interconnect_gbs", 64.0)), prices=prices,
        )  # fmt: skip
    return out


def parse_models(doc: dict[str, Any]) -> dict[str, OpenModel]:
    return {
        str(key): OpenModel(
            key=str(key),
            name=str(m.get("name", key)),
            params_b=float(m["params_b"]),
            layers=int(m["layers"]),
            heads=int(m["heads"]),
            kv_heads=int(m["kv_heads"]),
            head_dim=int(m["head_dim"]),
            source=str(m.get("source", "")),
        )  # fmt: skip
        for key, m in (doc.get("models") or {}).items()
    }


@lru_cache(maxsize=8)
def load_catalog(gpus_path: str | None = None, models_path: str | None = None) -> Catalog:
    """The shipped catalog, or edited copies (same shape) at the given paths."""
    gdoc = yaml.safe_load(Path(gpus_path).read_text() if gpus_path else _data("gpus.yaml"))
    mdoc = yaml.safe_load(Path(models_path).read_text() if models_path else _data("models.yaml"))
    return Catalog(gpus=parse_gpus(gdoc), models=parse_models(mdoc), as_of=str(gdoc.get("as_of", "")))


__all__ = ["BYTES", "COMPUTE", "GPU", "PRICE_KINDS", "Catalog", "OpenModel", "Price", "load_catalog"]
