"""Split prose into sentences without losing a character of it.

Extractive compression keeps whole sentences in their original order and spelling, so the
splitter returns spans into the source text rather than cleaned strings. It is a rule-based
splitter (end punctuation followed by space and a capital, digit or quote; paragraph breaks;
list items), with the usual abbreviations guarded: good enough for retrieved documents,
and dependency-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "ft",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "al",
        "fig",
        "no",
        "nos",
        "vol",
        "approx",
        "dept",
        "est",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "u.n",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "rev",
        "hon",
    ]
)

_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_PARAGRAPH = re.compile(r"\n\s*\n")
_LINE_ITEM = re.compile(r"\n(?=\s*(?:[-*•]|\d+[.)])\s)")


@dataclass(frozen=True)
class Sentence:
    """A sentence as `text[start:end]` of its source, in paragraph `paragraph`."""

    start: int
    end: int
    paragraph: int
    text: str


def _is_abbreviation(chunk: str) -> bool:
    word = chunk.rstrip(".!?\"'”’)]").split()[-1:] or [""]
    token = word[0].lower().rstrip(".").lstrip("(\"'“‘[")
    if token in _ABBREVIATIONS:
        return True
    # Initials such as "J." or "A.B." are not sentence ends.
    return bool(re.fullmatch(r"(?:[a-z]\.)*[a-z]", token)) and len(token) <= 3


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of `text` in order, each a span that can be cut back out of `text`."""
    out: list[Sentence] = []
    breaks = list(_PARAGRAPH.finditer(text))
    starts = [0, *(m.end() for m in breaks)]
    ends = [*(m.start() for m in breaks), len(text)]
    for paragraph, (start, end) in enumerate(zip(starts, ends, strict=True)):
        _split_paragraph(text, start, end, paragraph, out)
    return out


def _split_paragraph(text: str, start: int, end: int, paragraph: int, out: list[Sentence]) -> None:
    cuts = [start]
    for rx in (_BOUNDARY, _LINE_ITEM):
        for m in rx.finditer(text, start, end):
            if rx is _BOUNDARY and _is_abbreviation(text[cuts[-1] if cuts else start : m.start() + 1]):
                continue
            cuts.append(m.end() if rx is _BOUNDARY else m.start() + 1)
    cuts = sorted(set(cuts)) + [end]
    for a, b in zip(cuts, cuts[1:], strict=False):
        # Trim surrounding whitespace so that the span is the sentence itself.
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append(Sentence(a, b, paragraph, text[a:b]))
