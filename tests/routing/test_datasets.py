from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.routing.datasets import (
    convert_routellm_gsm8k,
    convert_routellm_mmlu,
    convert_routellm_mtbench,
    convert_routerbench,
    parse_price,
)


def test_routerbench_mbpp_test(routing_data: Path) -> None:
    conv = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv")
    assert conv.problems == []
    assert len(conv.examples) == 128
    ex = conv.examples[0]
    assert len(ex.candidates) == 11
    assert not ex.prompt.startswith("['")  # the list literal is unwrapped
    gpt4 = ex.candidates["gpt-4-1106-preview"]
    assert gpt4.quality in (0.0, 1.0) and gpt4.cost > 0 and gpt4.response
    total = sum(e.candidates["gpt-4-1106-preview"].cost for e in conv.examples)
    assert Decimal("0.5") < total < Decimal("2.5")


def test_routerbench_bad_row_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "sample_id,prompt,m1,m2,m1|total_cost,m2|total_cost\n"
        "s1,\"['Write a function\nthat adds']\",1.0,0.0,0.001,0.0001\n"  # lines 2-3
        "s2,['Sort a list'],maybe,1.0,0.001,0.0001\n"  # line 4
        "s3,['Reverse a string'],1.0,0.0,lots,0.0001\n"  # line 5
    )
    conv = convert_routerbench(bad)
    assert [e.id for e in conv.examples] == ["s1"]
    assert conv.examples[0].prompt == "Write a function\nthat adds"
    assert [(f, n) for f, n, _ in conv.problems] == [(str(bad), 4), (str(bad), 5)]
    assert "maybe" in conv.problems[0][2]


def test_routellm_mmlu_subject(routing_data: Path) -> None:
    conv = convert_routellm_mmlu(routing_data / "routellm_mmlu" / "mmlu_anatomy.csv")
    assert conv.problems == []
    assert 100 < len(conv.examples) <= 135
    ex = conv.examples[0]
    assert ex.id.startswith("mmlu.anatomy.") and ex.meta["subject"] == "anatomy"
    assert set(ex.candidates) == {"mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"}
    # Estimated cost: GPT-4 input at $10/M is ~17x Mixtral's $0.6/M.
    ratio = (
        ex.candidates["gpt-4-1106-preview"].cost / ex.candidates["mistralai/Mixtral-8x7B-Instruct-v0.1"].cost
    )
    assert 15 < ratio < 20


def test_routellm_mmlu_unknown_model_needs_a_price(tmp_path: Path) -> None:
    f = tmp_path / "mmlu_x.csv"
    f.write_text('prompt,other-model\n"Q?\nA. 1\nB. 2\nAnswer:",True\n"R",False\n')
    conv = convert_routellm_mmlu(f)
    assert [p[1] for p in conv.problems] == [2, 6]  # the first row spans lines 2-5
    assert "--price 'other-model=IN,OUT'" in conv.problems[0][2]
    conv = convert_routellm_mmlu(f, prices=dict([parse_price("other-model=1,2")]))
    assert len(conv.examples) == 2 and conv.examples[1].candidates["other-model"].quality == 0.0


def test_routellm_gsm8k_and_mtbench(routing_data: Path) -> None:
    g = convert_routellm_gsm8k(routing_data / "routellm_gsm8k_responses.csv")
    assert len(g.examples) == 1319 and not g.problems
    acc = sum(e.candidates["gpt-4-1106-preview"].quality for e in g.examples) / len(g.examples)
    assert acc == pytest.approx(0.857, abs=0.01)
    m = convert_routellm_mtbench(routing_data / "routellm_mtbench_judgements.jsonl")
    assert len(m.examples) == 80 and not m.problems
    ex = m.examples[0]
    assert ex.messages and ex.prompt is None
    assert all(0.1 <= c.quality <= 1.0 and c.response for c in ex.candidates.values())
