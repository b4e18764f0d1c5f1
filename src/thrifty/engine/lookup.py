"""Prompt-lookup drafts: guess the next tokens by finding the last n-gram earlier in the text.

Copy-heavy requests (edit this text, quote that document) repeat long runs of the prompt;
when the last few tokens appeared before, the tokens that followed them then are a cheap
draft that the model verifies in one batch. No draft model is needed.
"""

from __future__ import annotations


class PromptLookup:
    def __init__(self, tokens: list[int], ngram_min: int = 2, ngram_max: int = 3) -> None:
        self.ngram_min = ngram_min
        self.ngram_max = max(ngram_min, ngram_max)
        self.tokens: list[int] = []
        # n -> n-gram -> index just after its most recent occurrence (never the current tail).
        self._seen: dict[int, dict[tuple[int, ...], int]] = {
            n: {} for n in range(self.ngram_min, self.ngram_max + 1)
        }
        for t in tokens:
            self.add(t)

    def add(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens) - 1  # the n-gram ending before the new token is followed by it
        for n, seen in self._seen.items():
            if end >= n:
                seen[tuple(self.tokens[end - n : end])] = end

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the longest matching tail n-gram, or []."""
        size = len(self.tokens)
        for n in range(self.ngram_max, self.ngram_min - 1, -1):
            if size < n:
                continue
            at = self._seen[n].get(tuple(self.tokens[size - n :]))
            if at is not None:
                return self.tokens[at : at + limit]
        return []
