"""Cut a finished text into stream-sized pieces, so a replayed answer streams like a live one.

Clients render streamed text as it arrives and some SDK helpers only exercise their delta
logic when there is more than one delta, so a replay sends several pieces rather than one.
The pieces concatenate back to the exact original text.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\s*\S+|\s+$")


def split_text(text: str, words_per_piece: int = 4) -> list[str]:
    """Split `text` into pieces of a few words each (whitespace kept, order kept)."""
    if not text:
        return []
    words = _WORD.findall(text)
    if "".join(words) != text:  # only whitespace, or something the pattern missed
        return [text]
    return ["".join(words[i : i + words_per_piece]) for i in range(0, len(words), words_per_piece)]


def split_even(text: str, pieces: int = 3) -> list[str]:
    """Split `text` (e.g. tool-call JSON) into at most `pieces` fragments of similar length."""
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]
