"""Code answers run in the sandbox: on each other's example inputs, and against a route's tests."""

from __future__ import annotations

from thrifty.routing.execution import agreement_matrix, behaviours, run_tests

RIGHT = "```python\ndef dedupe(xs):\n    return sorted(set(xs))\n\nprint(dedupe([3, 1, 3]))\n```"
ALSO_RIGHT = (
    "```python\ndef unique_sorted(items):\n    out = []\n    for x in sorted(items):\n"
    "        if x not in out:\n            out.append(x)\n    return out\n\n"
    "print(unique_sorted([2, 2, 5, 1]))\n```"
)
WRONG = "```python\ndef uniq(values):\n    return list(values)\n\nuniq([1, 1])\n```"
LOOPS = "```python\ndef dedupe(xs):\n    while True:\n        pass\n\ndedupe([9])\n```"


async def test_answers_that_compute_the_same_thing_agree() -> None:
    bs = await behaviours([RIGHT, ALSO_RIGHT, WRONG, "I cannot help with that."])
    # Every answer ran on the inputs all of them show: [3, 1, 3], [2, 2, 5, 1], [1, 1].
    assert len(bs[0].outputs) == 3
    assert bs[0].outputs == bs[1].outputs == ["[1, 3]", "[1, 2, 5]", "[1]"]
    m = agreement_matrix(bs)
    assert m[0][1] == m[1][0] == 1.0
    assert m[0][2] == 0.0  # the wrong answer returns the list as given
    assert m[3][0] is None and bs[3].parsed is None and bs[3].runs == 0.0


async def test_a_call_that_never_returns_is_an_error_not_a_hang() -> None:
    bs = await behaviours([RIGHT, LOOPS], call_s=0.2)
    assert bs[1].outputs and all(o.startswith("!") for o in bs[1].outputs)
    assert bs[0].runs == 1.0 and bs[1].runs == 0.0
    assert agreement_matrix(bs)[0][1] == 0.0


async def test_route_tests_bind_their_function_name_to_the_answer() -> None:
    tests = "assert remove_dups([3, 1, 3]) == [1, 3]\nassert remove_dups([]) == []\n"
    assert await run_tests(RIGHT, tests) is True
    assert await run_tests(WRONG, tests) is False
    assert await run_tests("no code", tests) is None


async def test_route_tests_may_use_keywords_and_helpers() -> None:
    tests = "def check(v):\n    return v == [1, 3]\n\nif(True):\n    assert check(remove_dups([3, 1, 3]))\n"
    assert await run_tests(RIGHT, tests) is True
