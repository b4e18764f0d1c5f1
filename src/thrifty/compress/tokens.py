"""Token counts for the compression levers, offline.

A thin local wrapper until `thrifty.ledger.tokens` lands on main: o200k_base from
`bpe-openai` (a tiktoken-compatible encoder that needs no download), exact for current
OpenAI models and a close estimate for others. Budgets are soft limits, so an estimate
within a few percent is good enough.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _encoder() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    """Tokens in `text` (o200k_base); special-token strings count as ordinary text."""
    if not text:
        return 0
    return len(_encoder().encode_ordinary(text))
