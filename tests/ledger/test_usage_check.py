"""Usage sanity: what an upstream reports is billed only when it is plausible."""

from __future__ import annotations

from thrifty.config import parse_config
from thrifty.ledger.usage_check import check_usage, problems
from thrifty.types import Context, Usage


def ctx() -> Context:
    body = {"model": "m", "messages": [{"role": "user", "content": "how many tokens is this question?"}]}
    return Context(protocol="openai", body=body, config=parse_config(""))


def test_plausible_usage_is_kept_as_is() -> None:
    c, usage = ctx(), Usage(input_tokens=12, output_tokens=3)
    assert check_usage(c, usage, {"prompt_tokens": 12, "completion_tokens": 3}, answer_tokens=lambda: 3) is usage
    assert "usage_implausible" not in c.extra


def test_absurd_counts_are_flagged_kept_as_reported_and_estimated() -> None:
    c = ctx()
    raw = {"prompt_tokens": 1e30, "completion_tokens": -5}
    out = check_usage(c, Usage(input_tokens=10**9), raw, answer_tokens=lambda: 4, model="m")
    assert out.estimated and 0 < out.input_tokens < 100 and out.output_tokens == 4
    flag = c.extra["usage_implausible"]
    assert "1e+30" in flag["reported"] and any("negative" in p for p in flag["problems"])


def test_wrong_types_are_not_a_silent_zero() -> None:
    assert problems({"prompt_tokens": "many", "completion_tokens": [1]}, Usage(), 10**6, lambda: 2)
    assert problems({"prompt_tokens": 2.5}, Usage(input_tokens=2), 10**6, lambda: 2)


def test_more_than_the_model_can_take_is_implausible_and_the_limit_is_configurable() -> None:
    assert problems({"prompt_tokens": 5_000_000}, Usage(input_tokens=5_000_000), 4_000_000, lambda: 1)
    assert not problems({"prompt_tokens": 5_000}, Usage(input_tokens=5_000), 4_000_000, lambda: 1)


def test_the_answer_is_estimated_only_when_needed() -> None:
    called = []
    problems({"prompt_tokens": 3, "completion_tokens": 1}, Usage(input_tokens=3, output_tokens=1), 100,
             lambda: called.append(1) or 1)
    assert not called  # tokenizing every answer would cost every request
