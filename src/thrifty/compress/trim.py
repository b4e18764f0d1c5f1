"""Trim: remove what costs tokens and carries no meaning.

Rules, each switchable per route:
- whitespace: trailing spaces, runs of spaces inside a line, more than one blank line.
  Leading indentation and fenced code blocks are left alone (indentation is meaning in code);
- separators: a line that is only a repeated character (`-----`, `=====`, `*****`) becomes
  three of them, and several such lines in a row become one;
- html: tags are stripped (`<div class=...>` -> nothing, `<br>`/`<p>` -> line break) and
  the common entities decoded, outside code blocks;
- dedupe: a paragraph that repeats, word for word after normalising space and case, an
  earlier paragraph of the prompt (the same instruction pasted twice) is dropped;
- boilerplate: route-given regular expressions whose matches are deleted.

The question of the last user message is never rewritten: trim only touches it with the
whitespace rule when `trim_last_user` is set.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from thrifty.compress.messages import TextRef


class TrimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    whitespace: bool = True
    separators: bool = True
    html: bool = False
    dedupe: bool = True
    #: Regular expressions whose matches are removed (e.g. legal footers, tracking lines).
    boilerplate: list[str] = Field(default_factory=list)
    #: Also trim the last user message (whitespace, separators, html, boilerplate; never dedupe).
    trim_last_user: bool = False
    #: Paragraphs shorter than this many characters are never dropped as duplicates.
    dedupe_min_chars: int = Field(default=40, ge=1)


_FENCE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z))", re.S)
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_TRAILING = re.compile(r"[ \t]+$", re.M)
_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_SEPARATOR_LINE = re.compile(r"^[ \t]*([-=*_#~+.])\1{3,}[ \t]*$", re.M)
_SEPARATOR_RUN = re.compile(r"(^([-=*_#~+.])\2\2[ \t]*\n)(?:\s*\2{3}[ \t]*(?:\n|$))+", re.M)
_BLOCK_TAG = re.compile(r"<\s*(?:br|/p|p|/div|div|/li|/tr|/h[1-6]|hr)\b[^>]*>", re.I)
_LI_TAG = re.compile(r"<\s*li\b[^>]*>", re.I)
_DROP_ELEMENT = re.compile(r"<(script|style|head)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s+[^<>]*?)?\s*/?>")


def _outside_code(text: str, fn: Callable[[str], str]) -> str:
    """Apply `fn` to the parts of `text` that are not fenced code blocks."""
    parts = _FENCE.split(text)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def collapse_whitespace(text: str) -> str:
    def fix(chunk: str) -> str:
        chunk = _TRAILING.sub("", chunk)
        chunk = _INNER_SPACES.sub(" ", chunk)
        return _BLANKS.sub("\n\n", chunk)

    return _outside_code(text, fix)


def collapse_separators(text: str) -> str:
    def fix(chunk: str) -> str:
        chunk = _SEPARATOR_LINE.sub(lambda m: m.group(1) * 3, chunk)
        return _SEPARATOR_RUN.sub(lambda m: m.group(1), chunk)

    return _outside_code(text, fix)


def strip_html(text: str) -> str:
    def fix(chunk: str) -> str:
        if "<" not in chunk and "&" not in chunk:
            return chunk
        chunk = _DROP_ELEMENT.sub("", chunk)
        chunk = _COMMENT.sub("", chunk)
        chunk = _LI_TAG.sub("\n- ", chunk)
        chunk = _BLOCK_TAG.sub("\n", chunk)
        chunk = _TAG.sub("", chunk)
        return html.unescape(chunk)

    return _outside_code(text, fix)


def _norm(paragraph: str) -> str:
    return " ".join(paragraph.lower().split())


def dedupe_paragraphs(text: str, seen: set[str], min_chars: int) -> str:
    """Drop paragraphs of `text` already in `seen` (normalised); add the rest to `seen`."""
    paragraphs = re.split(r"(\n[ \t]*\n)", text)
    out: list[str] = []
    for i in range(0, len(paragraphs), 2):
        para = paragraphs[i]
        sep = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
        key = _norm(para)
        if len(key) >= min_chars and key in seen:
            continue
        if len(key) >= min_chars:
            seen.add(key)
        out.append(para + sep)
    result = "".join(out)
    return result.rstrip() if text and not text[-1].isspace() else result


def trim_text(text: str, settings: TrimSettings, patterns: list[re.Pattern[str]]) -> str:
    original = text
    for rx in patterns:
        text = rx.sub("", text)
    if settings.html:
        text = strip_html(text)
    if settings.separators:
        text = collapse_separators(text)
    if settings.whitespace:
        text = collapse_whitespace(text)
        # Line breaks left at the edges by removed tags or lines carry nothing.
        if original[:1].strip():
            text = text.lstrip()
        if original[-1:].strip():
            text = text.rstrip()
    return text


def trim_refs(refs: list[TextRef], settings: TrimSettings, protected: int | None) -> None:
    """Trim every text in place; message `protected` (the last user message) is left alone
    unless `trim_last_user`, and is never deduplicated."""
    patterns = [re.compile(p, re.M) for p in settings.boilerplate]
    seen: set[str] = set()
    for ref in refs:
        original = ref.text
        if ref.index == protected:
            if settings.trim_last_user:
                text = trim_text(original, settings, patterns)
                if text != original:
                    ref.text = text
            continue
        text = trim_text(original, settings, patterns)
        if settings.dedupe:
            text = dedupe_paragraphs(text, seen, settings.dedupe_min_chars)
        if text != original:
            ref.text = text
