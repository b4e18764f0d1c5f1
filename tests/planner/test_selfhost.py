"""Self-hosting options, break-even, spot for the batch share, and impossible workloads."""

from __future__ import annotations

import pytest

from thrifty.planner.bill import api_bill
from thrifty.planner.calibration import calibrated
from thrifty.planner.catalog import load_catalog
from thrifty.planner.plan import make_plan
from thrifty.planner.selfhost import HOURS_PER_MONTH, SelfHostPlan, plan_selfhost
from thrifty.planner.workload import PlanError, Workload, workload_from

CAT = load_catalog()


def _plan(**fields: object) -> tuple[Workload, SelfHostPlan]:
    w = workload_from({"requests_per_day": 100_000, "input_tokens": 1500, "output_tokens": 500,
                       "model": "gpt-4-turbo", **fields})  # fmt: skip
    return w, plan_selfhost(w, api_bill(w), CAT, calibrated())


def test_replicas_cover_the_peak_and_utilization_is_measured_at_the_mean() -> None:
    w, sh = _plan(
        selfhost={"model": "llama-3.1-8b", "gpus": ["H100"], "precisions": ["fp8"]}, peak_to_mean=3.0
    )
    (o,) = sh.options
    peak_rps = 100_000 / 86400 * 3
    assert (
        o.replicas * o.replica_tokens_per_s / 500
        >= peak_rps
        > (o.replicas - 1) * o.replica_tokens_per_s / 500
    )
    assert o.utilization == pytest.approx(100_000 / 86400 / (o.replicas * o.replica_tokens_per_s / 500))
    assert o.tpot_ms <= w.latency_ms
    assert o.total == pytest.approx(o.gpus_at_peak * 4.76 * HOURS_PER_MONTH)
    assert o.cost_per_m_output == pytest.approx(o.total / (3_000_000 * 500) * 1e6)


def test_break_even_is_where_one_replica_costs_what_the_api_does() -> None:
    w, sh = _plan(selfhost={"model": "llama-3.1-8b", "gpus": ["L4"], "precisions": ["fp8"]})
    (o,) = sh.options
    be = o.breakeven_requests_per_day
    assert be is not None
    api_per_request = api_bill(w).final / w.requests_per_month
    assert be * api_per_request == pytest.approx(o.n_gpus * o.price_per_gpu_hour * 24)
    # below the break-even the API is cheaper, and the plan says to stay
    small = make_plan(workload_from({"requests_per_day": be / 4, "input_tokens": 1500, "output_tokens": 500,
                                     "model": "gpt-4-turbo",
                                     "selfhost": {"model": "llama-3.1-8b", "gpus": ["L4"], "precisions": ["fp8"]}}))  # fmt: skip
    assert small.recommendation.startswith("Stay on the API")


def test_a_cheap_api_model_can_make_self_hosting_never_pay() -> None:
    plan = make_plan(workload_from({"requests_per_day": 1000, "input_tokens": 300, "output_tokens": 100,
                                    "model": "gpt-4o-mini", "selfhost": {"model": "llama-3.3-70b"}}))  # fmt: skip
    assert plan.recommendation.startswith("Stay on the API")
    best = plan.selfhost.best if plan.selfhost else None
    assert best is not None and best.total > plan.bill.final


def test_the_batch_share_runs_on_spot_at_full_throughput_with_an_interruption_overhead() -> None:
    sh_args = {"model": "llama-3.1-8b", "gpus": ["H100"], "precisions": ["fp8"], "spot_overhead": 0.25}
    w, sh = _plan(levers={"batch_share": 0.4}, selfhost=sh_args)
    (o,) = sh.options
    assert o.batch_price_kind == "spot"
    assert o.batch_cost == pytest.approx(o.batch_gpu_hours * 2.69)
    _, none = _plan(selfhost=sh_args)
    assert none.options[0].batch_cost == 0
    # the interactive part shrinks with the share moved to batch
    assert o.interactive_cost <= none.options[0].interactive_cost


def test_an_hourly_profile_prices_autoscaled_replicas() -> None:
    hourly = [1.0] * 8 + [4.0] * 12 + [1.0] * 4
    _, sh = _plan(hourly=hourly, selfhost={"model": "llama-3.1-8b", "gpus": ["L40S"], "precisions": ["fp8"]})
    (o,) = sh.options
    assert o.autoscaled_cost is not None and o.autoscaled_cost < o.interactive_cost
    assert o.total == pytest.approx(o.autoscaled_cost)


def test_a_model_larger_than_every_gpu_gets_a_message_not_a_number() -> None:
    with pytest.raises(PlanError, match="no GPU of the catalog can serve it"):
        _plan(selfhost={"model": "llama-3.1-405b", "gpus": ["T4", "L4"], "precisions": ["fp16"]})
    plan = make_plan(workload_from({"requests_per_day": 1000, "selfhost": {"model": "llama-3.1-405b", "gpus": ["T4"],
                                                                           "precisions": ["fp16"]}}))  # fmt: skip
    assert plan.selfhost is None and "812 GB" in (plan.selfhost_error or "")
    assert plan.recommendation.startswith("Stay on the API")


def test_a_latency_target_below_the_single_token_bound_gets_a_message() -> None:
    with pytest.raises(PlanError, match="below the single-token bound"):
        _plan(latency_ms=0.2, selfhost={"model": "llama-3.3-70b"})


def test_unknown_names_are_refused() -> None:
    with pytest.raises(KeyError, match="unknown GPU 'X9'"):
        _plan(selfhost={"gpus": ["X9"]})
    with pytest.raises(PlanError, match="unknown precision 'fp3'"):
        _plan(selfhost={"precisions": ["fp3"]})
