"""Replayed text is cut into several pieces that join back to exactly the original."""

from __future__ import annotations

import random

import pytest

from thrifty.protocol.pieces import split_even, split_text


@pytest.mark.parametrize(
    "text",
    [
        "one",
        "  leading and trailing  ",
        "lines\n\nwith\tblank lines\n",
        "   ",
        "\n",
        "unicode: 你好，世界 🌍 café",
        "a " * 50,
    ],
)
def test_split_text_joins_back(text: str) -> None:
    pieces = split_text(text)
    assert "".join(pieces) == text
    assert all(pieces)


def test_split_text_gives_several_pieces_of_a_few_words() -> None:
    pieces = split_text("The quick brown fox jumps over the lazy dog once more today.")
    assert pieces == ["The quick brown fox", " jumps over the lazy", " dog once more today."]
    assert split_text("") == []


def test_split_even() -> None:
    assert split_even('{"city": "Paris"}') == ['{"city', '": "Pa', 'ris"}']
    assert "".join(split_even("x" * 10, 4)) == "x" * 10 and len(split_even("x" * 10, 4)) == 4
    assert split_even("") == [] and split_even("ab", 5) == ["a", "b"]


def test_random_texts_join_back() -> None:
    rng = random.Random(7)
    alphabet = "ab c\n\t é你🌍  "
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert "".join(split_text(text)) == text
