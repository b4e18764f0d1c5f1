"""Reading answers: the final number, the worked steps, the code and its example calls."""

from __future__ import annotations

from thrifty.routing.answers import arithmetic_errors, extract_code, final_number, parse_code


def test_final_number_prefers_the_marked_answer() -> None:
    assert final_number("3 x 60 = 180 meters, so 540 in a week.\n#### 540") == 540.0
    assert final_number("The total is \\boxed{1,250}.") == 1250.0
    assert final_number("So the answer is $18.50 per day, up from 12") == 18.5
    assert final_number("He ends with 7 apples.") == 7.0
    assert final_number("No idea.") is None


def test_arithmetic_errors_recompute_the_stated_steps() -> None:
    right = "He runs 3*60 = <<3*60=180>>180 m, then 180*3 = <<180*3=540>>540 m."
    assert arithmetic_errors(right) == (2, 0)
    wrong = "Eggs left: <<16-3-4=10>>10, money <<10*2=20>>20"
    assert arithmetic_errors(wrong) == (2, 1)
    # Plain prose equations are checked when there are no annotations.
    assert arithmetic_errors("She pays 12 x 3 = 38 dollars") == (1, 1)


def test_extract_code_reads_fences_and_tags() -> None:
    text = "Here:\n```python\ndef f(x):\n    return x + 1\n```\nand usage:\n```\nprint(f(2))\n```"
    assert "def f(x)" in extract_code(text) and "print(f(2))" in extract_code(text)
    tagged = "[PYTHON]\ndef g():\n    return 1\n[/PYTHON]\n[TESTS]\nassert g() == 1\n[/TESTS]"
    assert "def g()" in extract_code(tagged) and "assert g() == 1" in extract_code(tagged)
    assert extract_code("Just prose, no code at all.") == ""


def test_parse_code_finds_the_entry_function_and_its_literal_calls() -> None:
    text = (
        "```python\nimport math\n\ndef helper(v):\n    return v * 2\n\n"
        "def remove_elements(a, b):\n    return [helper(x) // 2 for x in a if x not in b]\n\n"
        "main_list = [1, 2, 3, 4]\nprint(remove_elements(main_list, [2, 4]))  # [1, 3]\n"
        "print(remove_elements([5, 6], [6]))\nprint(remove_elements(unknown, [1]))\n```"
    )
    parsed = parse_code(text)
    assert parsed is not None
    assert parsed.entry == "remove_elements"
    assert parsed.functions == ["helper", "remove_elements"]
    # The call with a name bound to a literal is resolved; the one with an unknown name is not.
    assert parsed.calls == [([1, 2, 3, 4], [2, 4]), ([5, 6], [6])]
    assert "print(" not in parsed.definitions and "import math" in parsed.definitions


def test_parse_code_without_calls_takes_the_uncalled_last_function() -> None:
    parsed = parse_code("```python\ndef main(n):\n    return aux(n)\n\ndef aux(n):\n    return n\n```")
    assert parsed is not None and parsed.entry == "main" and parsed.calls == []
    assert parse_code("no code here") is None
