"""The API bill and the lever waterfall, on the seeds' worked numbers and on a full stack."""

from __future__ import annotations

import pytest

from thrifty.planner.bill import api_bill, api_rates
from thrifty.planner.workload import PlanError, workload_from


def test_gpt4_turbo_100k_queries_a_day_costs_90k_a_month() -> None:
    """Seed: GPT-4 Turbo at $10/$30 per 1M tokens, 100,000 queries/day of 1,500 in + 500 out ≈ $90,000/month."""
    rates = api_rates("gpt-4-turbo")
    assert (rates.input, rates.output) == (10.0, 30.0)
    bill = api_bill(workload_from({"requests_per_day": 100_000, "input_tokens": 1500, "output_tokens": 500,
                                   "model": "gpt-4-turbo"}))  # fmt: skip
    assert bill.base == pytest.approx(90_000)
    assert bill.final == pytest.approx(90_000)  # no lever, nothing saved


def test_a_30_percent_cache_hit_rate_on_1m_requests_at_5_cents_saves_15k() -> None:
    """Seed: 1,000,000 requests/month at $0.05 with 30% cache hits saves $15,000."""
    bill = api_bill(workload_from({"requests_per_month": 1_000_000, "price_per_request": 0.05,
                                   "levers": {"cache_hit_rate": 0.3}}))  # fmt: skip
    assert bill.base == pytest.approx(50_000)
    cache = bill.steps[0]
    assert cache.lever == "cache" and cache.saved == pytest.approx(15_000)
    assert bill.saved == pytest.approx(15_000) and bill.final == pytest.approx(35_000)


def test_each_lever_applies_to_what_the_previous_left_and_the_bars_add_up() -> None:
    w = workload_from({
        "requests_per_day": 10_000, "input_tokens": 2000, "output_tokens": 400, "model": "gpt-4o",
        "levers": {"cache_hit_rate": 0.25, "routed_share": 0.4, "route_model": "gpt-4o-mini", "compression": 0.3,
                   "output_cap": 0.2, "batch_share": 0.5},
    })  # fmt: skip
    bill = api_bill(w)
    n = 300_000  # requests a month
    base = n * (2000 * 2.5 + 400 * 10) / 1e6
    assert bill.base == pytest.approx(base)
    assert [s.lever for s in bill.steps] == ["cache", "route", "compress", "cap", "batch"]
    assert bill.steps[0].saved == pytest.approx(0.25 * base)
    # routing: 40% of the rest at gpt-4o-mini's $0.15/$0.60
    kept = 0.75 * n
    routed_in = kept * 2000 * (0.6 * 2.5 + 0.4 * 0.15) / 1e6
    routed_out = kept * 400 * (0.6 * 10 + 0.4 * 0.60) / 1e6
    assert bill.steps[1].bill_after == pytest.approx(routed_in + routed_out)
    assert bill.steps[2].saved == pytest.approx(0.3 * routed_in)
    assert bill.steps[3].saved == pytest.approx(0.2 * routed_out)
    after_cap = 0.7 * routed_in + 0.8 * routed_out
    assert bill.final == pytest.approx(after_cap * 0.75)  # half at half price
    assert sum(s.saved for s in bill.steps) == pytest.approx(bill.base - bill.final)
    # what a self-hosted model would still serve
    assert bill.requests_per_month == pytest.approx(kept)
    assert (bill.input_tokens, bill.output_tokens) == (pytest.approx(1400), pytest.approx(320))


def test_own_prices_override_the_catalog_and_unknown_models_say_so() -> None:
    w = workload_from({"requests_per_day": 1000, "input_tokens": 100, "output_tokens": 10, "model": "my-private-model",
                       "input_price": 1.0, "output_price": 2.0})  # fmt: skip
    assert api_bill(w).base == pytest.approx(30_000 * (100 * 1 + 10 * 2) / 1e6)
    with pytest.raises(PlanError, match="no price for model 'my-private-model'"):
        api_bill(workload_from({"requests_per_day": 1000, "model": "my-private-model"}))
    with pytest.raises(PlanError, match="route_model"):
        api_bill(workload_from({"requests_per_day": 1000, "levers": {"routed_share": 0.5}}))


def test_per_request_prices_cannot_price_token_levers_and_say_so() -> None:
    bill = api_bill(workload_from({"requests_per_day": 1000, "price_per_request": 0.01,
                                   "levers": {"compression": 0.5, "batch_share": 1.0}}))  # fmt: skip
    compress = next(s for s in bill.steps if s.lever == "compress")
    assert compress.saved == 0 and "not computable" in compress.note
    assert bill.final == pytest.approx(300 * 0.5)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("requests_per_day", -5, "requests_per_day"),
        ("input_tokens", -1, "input_tokens"),
        ("levers", {"cache_hit_rate": 1.5}, "levers.cache_hit_rate"),
        ("hourly", [1.0] * 23, "24 non-negative"),
        ("latency_ms", 0, "latency_ms"),
    ],
)
def test_impossible_inputs_get_a_message_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        workload_from({"requests_per_day": 1000, field: value})
