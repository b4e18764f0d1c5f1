"""Memory and time of one replica from first principles: weights, GQA KV cache, roofline steps."""

from __future__ import annotations

import pytest

from thrifty.planner.catalog import load_catalog
from thrifty.planner.roofline import ROOFLINE, Deployment, Efficiency, gpus_needed

CAT = load_catalog()
LLAMA8, LLAMA70, H100 = CAT.model("llama-3.1-8b"), CAT.model("llama-3.3-70b"), CAT.gpu("H100")


def test_weights_and_kv_cache_per_precision_and_gqa_layout() -> None:
    assert LLAMA8.weight_bytes("fp16") == pytest.approx(16.06e9)
    assert LLAMA8.weight_bytes("int4") == pytest.approx(LLAMA8.weight_bytes("fp16") / 4)
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token
    assert LLAMA8.kv_bytes_per_token("fp16") == 131_072
    assert LLAMA8.kv_bytes_per_token("fp8") == 65_536
    # without GQA (32 KV heads, one per query head) the cache would be 4x larger
    assert LLAMA8.kv_bytes_per_token("fp16") * LLAMA8.heads / LLAMA8.kv_heads == 524_288


def test_batch_is_bounded_by_kv_memory_and_by_the_engine() -> None:
    d = Deployment(LLAMA8, H100, 1, "fp16", "fp16", max_batch=None)
    free = 80e9 * 0.9 - 16.06e9
    assert d.max_batch_for(4096) == int(free // (4096 * 131_072))
    assert d.max_batch_for(1024) > d.max_batch_for(4096)
    assert Deployment(LLAMA8, H100, 1, "fp16", "fp16", max_batch=256).max_batch_for(100) == 256
    # 70B at fp16 (141 GB) needs two 80 GB GPUs; at fp8 (71 GB) one holds it with room for a single
    # 4k-token sequence (72 GB usable), so an 8k one needs two
    assert not Deployment(LLAMA70, H100, 1, "fp16").fits(1)
    assert gpus_needed(LLAMA70, H100, "fp16", 4096) == 2
    assert gpus_needed(LLAMA70, H100, "fp8", 4096) == 1
    assert Deployment(LLAMA70, H100, 1, "fp8", max_batch=None).max_batch_for(4096) == 1
    assert gpus_needed(LLAMA70, H100, "fp8", 8192) == 2


def test_decode_is_bandwidth_bound_and_prefill_compute_bound() -> None:
    d = Deployment(LLAMA8, H100, 1, "fp16")
    # one stream: the weights read once per token at full bandwidth
    assert d.step_time(1, 1, ROOFLINE) == pytest.approx(16.06e9 / 3.35e12, rel=1e-3)
    assert d.bandwidth_bound_tpot() == pytest.approx(16.06e9 / 3.35e12)
    # a bigger batch costs little more per step while bandwidth bound, so throughput climbs
    assert d.step_time(32, 512, ROOFLINE) < 1.5 * d.step_time(1, 512, ROOFLINE)
    assert d.throughput(32, 512, 256, ROOFLINE) > 20 * d.throughput(1, 512, 256, ROOFLINE)
    # prefill of 2,000 tokens is set by FLOPs: 2 per weight per token plus attention
    flops = 2000 * LLAMA8.flops_per_token(1000)
    assert d.prefill_work(2000, ROOFLINE) == pytest.approx(flops / 989e12)
    assert d.ttft(2000, ROOFLINE) == pytest.approx(flops / 989e12)


def test_tensor_parallelism_splits_the_work_and_pays_for_all_reduces() -> None:
    one = Deployment(LLAMA8, H100, 1, "fp16")
    two = Deployment(LLAMA8, H100, 2, "fp16")
    assert two.step_time(1, 1, ROOFLINE) < one.step_time(1, 1, ROOFLINE)
    slow = Efficiency(allreduce_s=50e-6)
    assert two.step_time(1, 1, slow) - two.step_time(1, 1, ROOFLINE) == pytest.approx(2 * 32 * 50e-6)


def test_the_batch_for_a_latency_target_is_the_largest_that_meets_it() -> None:
    d = Deployment(LLAMA8, H100, 1, "fp8", "fp8", max_batch=None)
    eff = Efficiency(0.75, 0.9, 0.55, 0.0, overlap=False)
    for target in (0.010, 0.030, 0.080):
        b = d.batch_for_latency(target, 1000, 200, eff)
        assert b >= 1 and d.tpot(b, 1000, 200, eff) <= target < d.tpot(b + 1, 1000, 200, eff)
    assert d.batch_for_latency(d.tpot(1, 1000, 200, eff) * 0.99, 1000, 200, eff) == 0
