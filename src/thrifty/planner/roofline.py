"""How fast one deployment serves: decode bounded by memory bandwidth, prefill by compute.

A decode step reads every weight once plus the KV cache of every sequence in the batch, and does
2 FLOPs per weight per sequence: the ideal roofline takes the larger of the two times; measured
engines behave like their sum, at the fraction of peak the serving stack actually reaches. Prefill is the same arithmetic for many
tokens at once, so it is compute bound. Tensor parallelism splits weights, KV and FLOPs over the
GPUs and adds two all-reduces per layer to every step.

The pure roofline (every efficiency 1, no all-reduce cost) is known to be optimistic; the three
factors of `Efficiency` are fitted to published measurements in `calibration.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from thrifty.planner.catalog import GPU, OpenModel

#: Share of GPU memory the engine may use for weights and KV cache (vLLM's default
#: gpu_memory_utilization); the rest holds activations, CUDA graphs and the allocator's slack.
MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the datasheet peak a serving stack reaches, and its tensor-parallel cost."""

    #: achieved / datasheet memory bandwidth streaming the weights during decode
    bandwidth: float = 1.0
    #: achieved / datasheet memory bandwidth reading the KV cache (attention kernels over many
    #: sequences of different lengths reach less of the peak than one long weight stream)
    kv_bandwidth: float = 1.0
    #: achieved / datasheet dense FLOP/s (prefill and compute-bound decode)
    compute: float = 1.0
    #: seconds per all-reduce (two per layer per step) when the model spans several GPUs
    allreduce_s: float = 0.0
    #: True: a step takes the longer of its memory and compute time (the ideal roofline). False:
    #: their sum, which is how the measured engines behave (on the calibration split the sum fits
    #: with a mean error of 3%, a soft maximum with 8%, see docs/planner.md)
    overlap: bool = True


ROOFLINE = Efficiency()


@dataclass(frozen=True)
class Deployment:
    """One replica: a model on `n_gpus` GPUs of one kind (tensor parallel), at a precision."""

    model: OpenModel
    gpu: GPU
    n_gpus: int = 1
    precision: str = "fp16"
    kv_precision: str = "fp16"
    #: the engine's largest batch (vLLM's default max_num_seqs is 256); None: KV memory only
    max_batch: int | None = 256

    @property
    def label(self) -> str:
        return f"{self.n_gpus}x{self.gpu.key} {self.precision}"

    @property
    def weight_bytes(self) -> float:
        return self.model.weight_bytes(self.precision)

    @property
    def usable_memory(self) -> float:
        return self.n_gpus * self.gpu.memory * MEMORY_UTILIZATION

    @property
    def kv_memory(self) -> float:
        """Bytes left for the KV cache once the weights are loaded (negative: they do not fit)."""
        return self.usable_memory - self.weight_bytes

    def fits(self, context: float) -> bool:
        """Do the weights and one sequence of `context` tokens fit?"""
        return self.kv_memory >= context * self.model.kv_bytes_per_token(self.kv_precision)

    def max_batch_for(self, context: float) -> int:
        """Sequences of `context` tokens whose KV cache fits at once (capped by the engine)."""
        per_seq = max(context, 1.0) * self.model.kv_bytes_per_token(self.kv_precision)
        fit = int(self.kv_memory // per_seq) if self.kv_memory > 0 else 0
        return fit if self.max_batch is None else min(fit, self.max_batch)

    # -- time ---------------------------------------------------------------------------------

    def comm_time(self, eff: Efficiency, tokens: float = 1.0) -> float:
        """Two all-reduces per layer of `tokens` x hidden 16-bit activations (ring: each GPU sends
        and receives 2(n-1)/n of the payload over its link), plus their fixed latency."""
        if self.n_gpus == 1:
            return 0.0
        payload = tokens * self.model.hidden * 2.0
        wire = 2 * (self.n_gpus - 1) / self.n_gpus * payload / (self.gpu.interconnect_gbs * 1e9 / 2)
        return 2 * self.model.layers * (eff.allreduce_s + wire)

    def step_time(self, batch: float, context: float, eff: Efficiency = ROOFLINE) -> float:
        """Seconds for one decode step of `batch` sequences whose mean context is `context`."""
        kv = batch * context * self.model.kv_bytes_per_token(self.kv_precision)
        t_mem = (self.weight_bytes / eff.bandwidth + kv / eff.kv_bandwidth) / self.n_gpus / self.gpu.bandwidth
        flops = batch * self.model.flops_per_token(context)
        t_cmp = flops / self.n_gpus / (self.gpu.flops(self.precision) * eff.compute)
        both = max(t_mem, t_cmp) if eff.overlap else t_mem + t_cmp
        return both + self.comm_time(eff, batch)

    def prefill_work(self, tokens: float, eff: Efficiency = ROOFLINE) -> float:
        """GPU-seconds of compute to prefill one prompt of `tokens` (mean context tokens/2)."""
        flops = tokens * self.model.flops_per_token(tokens / 2)
        wire = self.comm_time(eff, tokens) - self.comm_time(eff, 0.0)
        return flops / self.n_gpus / (self.gpu.flops(self.precision) * eff.compute) + wire

    def ttft(self, tokens: float, eff: Efficiency = ROOFLINE) -> float:
        """Time to first token of one prompt alone: its prefill (at least one read of the weights)."""
        t_mem = self.weight_bytes / self.n_gpus / (self.gpu.bandwidth * eff.bandwidth)
        return max(self.prefill_work(tokens, eff), t_mem) + self.comm_time(eff)

    def tpot(
        self, batch: float, input_tokens: float, output_tokens: float, eff: Efficiency = ROOFLINE
    ) -> float:
        """Seconds per output token of each of `batch` running streams, with new prompts prefilled
        between steps: a request's wall time is `batch x prefill + output x step`."""
        ctx = input_tokens + output_tokens / 2
        step = self.step_time(batch, ctx, eff)
        return step + batch * self.prefill_work(input_tokens, eff) / max(output_tokens, 1.0)

    def throughput(
        self, batch: float, input_tokens: float, output_tokens: float, eff: Efficiency = ROOFLINE
    ) -> float:
        """Output tokens/s with `batch` sequences always running (completed requests replaced)."""
        return batch / self.tpot(batch, input_tokens, output_tokens, eff)

    def saturation(self, input_tokens: float, output_tokens: float, eff: Efficiency = ROOFLINE,
                   concurrency: int | None = None) -> tuple[int, float]:  # fmt: skip
        """(batch, output tokens/s) at the largest batch KV memory, the engine and `concurrency` allow."""
        batch = self.max_batch_for(input_tokens + output_tokens / 2)
        if concurrency is not None:
            batch = min(batch, concurrency)
        if batch < 1:
            return 0, 0.0
        return batch, self.throughput(batch, input_tokens, output_tokens, eff)

    def batch_for_latency(self, target_tpot: float, input_tokens: float, output_tokens: float,
                          eff: Efficiency = ROOFLINE) -> int:  # fmt: skip
        """The largest batch whose time per output token stays within `target_tpot` (0: none)."""
        cap = self.max_batch_for(input_tokens + output_tokens / 2)
        if cap < 1 or self.tpot(1, input_tokens, output_tokens, eff) > target_tpot:
            return 0
        lo, hi = 1, cap
        while lo < hi:  # tpot grows with the batch: binary search the last one within target
            mid = (lo + hi + 1) // 2
            if self.tpot(mid, input_tokens, output_tokens, eff) <= target_tpot:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def bandwidth_bound_tpot(self) -> float:
        """The fastest any single stream can decode here: the weights read once at full bandwidth."""
        return self.weight_bytes / self.n_gpus / self.gpu.bandwidth


def gpus_needed(model: OpenModel, gpu: GPU, precision: str, context: float, kv_precision: str = "fp16",
                choices: tuple[int, ...] = (1, 2, 4, 8)) -> int | None:  # fmt: skip
    """The fewest GPUs (tensor-parallel sizes of `choices`) that hold the weights and one sequence."""
    for n in choices:
        if Deployment(model, gpu, n, precision, kv_precision).fits(context):
            return n
    return None


def ceil_div(a: float, b: float) -> int:
    return math.ceil(a / b - 1e-9)


__all__ = ["MEMORY_UTILIZATION", "ROOFLINE", "Deployment", "Efficiency", "ceil_div", "gpus_needed"]
