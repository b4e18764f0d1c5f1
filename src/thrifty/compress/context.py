"""RAG context compression for the last user message: keep what answers the question.

The last user message of a RAG request holds retrieved context and a question. The
question is found (after the last `Question:`-style marker, else the final paragraph if
it asks something, else the last text part of a multi-part message) and never touched:
the rewritten message is the compressed context followed by the original question,
byte for byte. When no question can be found, or the budget cannot even hold it, the
request goes out uncompressed and the reason is recorded in `ctx.extra["compress"]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.extract import OMITTED, Embedder, Weights, compress_many
from thrifty.compress.messages import TextRef
from thrifty.ledger.tokens import count_text


class ContextSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: Keep at most this share of the context's tokens.
    ratio: float = Field(default=0.35, gt=0, le=1)
    #: Cap on the whole rewritten message (context + question), in tokens.
    budget_tokens: int | None = Field(default=None, gt=0)
    #: Leave messages whose context is shorter than this alone.
    min_tokens: int = Field(default=400, ge=0)
    #: Where the question starts (the last match wins).
    question_marker: str = r"(?im)^[ \t]*(?:#+[ \t]*)?(?:question|query|q)[ \t]*[:：]"
    #: Leave context that holds fenced code alone (dropping lines of code breaks it).
    skip_code: bool = True
    weights: dict[str, float] = Field(default_factory=dict)


@dataclass
class Split:
    """`text[:cut]` is context, `text[cut:]` is the question part (kept verbatim)."""

    text: str
    cut: int

    @property
    def context(self) -> str:
        return self.text[: self.cut]

    @property
    def question(self) -> str:
        return self.text[self.cut :]


@lru_cache(maxsize=32)
def _marker(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def split_question(text: str, marker: str) -> Split | None:
    """Find the question in one text: after the last marker, else a final paragraph with '?'."""
    matches = list(_marker(marker).finditer(text))
    if matches:
        return Split(text, matches[-1].start())
    stripped = text.rstrip()
    cut = stripped.rfind("\n\n")
    if cut > 0 and "?" in stripped[cut:]:
        return Split(text, cut + 2)
    return None


@dataclass
class Outcome:
    """What happened to one message: the new texts (None: untouched) and why."""

    texts: list[str] | None
    reason: str
    tokens_before: int = 0
    tokens_after: int = 0


def compress_parts(parts: list[str], settings: ContextSettings, embedder: Embedder | None) -> Outcome:
    """Compress the text parts of the last user message; the question part stays as sent.

    With several parts the last one holds the question (itself split if it also holds
    context) and the earlier ones are context.
    """
    if not parts:
        return Outcome(None, "no text in the last user message")
    last = split_question(parts[-1], settings.question_marker)
    if last is None and len(parts) == 1:
        return Outcome(None, "no question found in the last user message")
    question = last.question if last is not None else parts[-1]
    contexts = [*parts[:-1], last.context] if last is not None else list(parts[:-1])
    context_text = "\n\n".join(c for c in contexts if c.strip())
    context_tokens = count_text(context_text)
    question_tokens = count_text(question)
    if settings.skip_code and "```" in context_text:
        return Outcome(None, "context holds fenced code; left as is")
    if context_tokens < settings.min_tokens:
        return Outcome(None, f"context of {context_tokens} tokens is under min_tokens {settings.min_tokens}")
    budget = int(context_tokens * settings.ratio)
    if settings.budget_tokens is not None:
        if settings.budget_tokens <= question_tokens:
            return Outcome(
                None,
                f"budget of {settings.budget_tokens} tokens cannot hold the question ({question_tokens} tokens); "
                "sent uncompressed",
            )
        budget = min(budget, settings.budget_tokens - question_tokens)
    new_contexts = compress_many(question, contexts, budget, embedder, Weights(**settings.weights))
    if last is not None:
        tail = new_contexts[-1]
        sep = _separator(last.context)
        new_last = (tail.rstrip() + sep if tail.strip() and tail != OMITTED else "") + last.question
        texts = [*new_contexts[:-1], new_last]
    else:
        texts = [*new_contexts, parts[-1]]
    before = sum(count_text(p) for p in parts)
    after = sum(count_text(t) for t in texts)
    if after >= before:
        return Outcome(None, "compression would not save tokens", before, before)
    return Outcome(texts, "compressed", before, after)


def _separator(context: str) -> str:
    """The whitespace between the original context and its question, kept as it was."""
    stripped = context.rstrip()
    return context[len(stripped) :] or "\n\n"


def question_refs(refs: list[TextRef], index: int) -> list[TextRef]:
    """The text parts of message `index` (documents included) in order."""
    return [r for r in refs if r.index == index]
