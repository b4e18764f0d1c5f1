"""Offline token estimates for when a provider gives no usage (a stream cut short).

Counts use OpenAI's o200k_base vocabulary through `bpe-openai`, which works without network
(tiktoken downloads its files at run time). For OpenAI's current models the text counts are
exact and the per-message overhead follows OpenAI's published accounting; for other models
they are estimates, and the ledger marks rows priced from them as estimated.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
from pathlib import Path
from typing import Any, Protocol

#: OpenAI bills 3 tokens of framing per message, 1 more for a `name`, and 3 to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
#: Tokens of framing per tool definition and per tool call, on top of their JSON.
TOKENS_PER_TOOL = 8
TOKENS_PER_TOOL_CALL = 4
#: Images without their size: OpenAI bills a 1024x1024 image 765 tokens (85 at `detail: low`);
#: Anthropic bills about width*height/750, some 1,600 tokens at its largest unscaled size.
OPENAI_IMAGE_TOKENS = 765
OPENAI_LOW_DETAIL_IMAGE_TOKENS = 85
ANTHROPIC_IMAGE_TOKENS = 1600
#: A PDF without its page count, taken as one page of dense text.
DOCUMENT_TOKENS = 1500


class _Counter(Protocol):
    def count(self, text: str) -> int: ...


def _load_bindings() -> Any:
    """bpe-openai's Rust extension, loaded without the package's `__init__`.

    Importing the package parses all its vocabularies into Python dicts (1.5 s and much
    memory) for a tiktoken-compatible wrapper we do not use; the extension alone loads in
    under 0.1 s. Falls back to the ordinary import if the file is not where expected.
    """
    spec = importlib.util.find_spec("bpe_openai")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for path in Path(folder).glob("_bindings*.so"):
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            module_spec = importlib.util.spec_from_file_location("bpe_openai._bindings", path, loader=loader)
            if module_spec is not None:
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                return module
    from bpe_openai import _bindings

    return _bindings


@functools.cache
def _tokenizer() -> _Counter:
    """The o200k_base tokenizer, loaded once per process (call `warm()` at start-up)."""
    tokenizer: _Counter = _load_bindings().tokenizer_for_encoding("o200k_base")
    return tokenizer


def warm() -> None:
    """Load the tokenizer now, so the first estimate on the request path is fast."""
    _tokenizer()


def count_text(text: str) -> int:
    """Tokens in `text` under o200k_base (special-token text counts as ordinary text).

    A malformed body may put a number or an object where text belongs: its JSON is counted.
    """
    if not text:
        return 0
    if not isinstance(text, str):
        text = _json(text)
    try:
        return _tokenizer().count(text)
    except UnicodeEncodeError:  # lone surrogates
        return _tokenizer().count(text.encode("utf-8", "replace").decode("utf-8"))


def estimate_output_tokens(text: str) -> int:
    """Tokens a model spent writing `text`."""
    return count_text(text)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _part_tokens(part: Any, protocol: str) -> int:
    """Tokens of one content part or block, in either protocol's shape."""
    if isinstance(part, str):
        return count_text(part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if kind in ("text", "refusal"):
        return count_text(part.get("text") or part.get("refusal") or "")
    if kind == "image_url":
        detail = (part.get("image_url") or {}).get("detail")
        return OPENAI_LOW_DETAIL_IMAGE_TOKENS if detail == "low" else OPENAI_IMAGE_TOKENS
    if kind == "image":
        return ANTHROPIC_IMAGE_TOKENS if protocol == "anthropic" else OPENAI_IMAGE_TOKENS
    if kind in ("document", "file"):
        source = part.get("source") or {}
        return count_text(source.get("data", "")) if source.get("type") == "text" else DOCUMENT_TOKENS
    if kind == "tool_use":
        return (
            TOKENS_PER_TOOL_CALL
            + count_text(part.get("name", ""))
            + count_text(_json(part.get("input") or {}))
        )
    if kind == "tool_result":
        return TOKENS_PER_TOOL_CALL + _content_tokens(part.get("content"), protocol)
    if kind == "thinking":
        return count_text(part.get("thinking", ""))
    if kind == "input_audio":
        return count_text((part.get("input_audio") or {}).get("data", "")) // 10
    return count_text(_json(part))  # unknown blocks: their JSON is a fair upper bound


def _content_tokens(content: Any, protocol: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content)
    if isinstance(content, list):
        return sum(_part_tokens(part, protocol) for part in content)
    return _part_tokens(content, protocol)


def _message_tokens(message: dict[str, Any], protocol: str) -> int:
    tokens = TOKENS_PER_MESSAGE + count_text(str(message.get("role", "")))
    tokens += _content_tokens(message.get("content"), protocol)
    if message.get("name"):
        tokens += TOKENS_PER_NAME + count_text(str(message["name"]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        tokens += (
            TOKENS_PER_TOOL_CALL
            + count_text(function.get("name", ""))
            + count_text(function.get("arguments", ""))
        )
    return tokens


def _tool_tokens(tool: dict[str, Any]) -> int:
    definition = tool.get("function", tool)  # OpenAI nests it; Anthropic does not
    return TOKENS_PER_TOOL + count_text(_json(definition))


def estimate_request_tokens(protocol: str, body: dict[str, Any]) -> int:
    """Input tokens of a request in `protocol` ("openai" or "anthropic"): messages, system, tools."""
    try:
        return _request_tokens(protocol, body)
    except (AttributeError, KeyError, TypeError, ValueError):  # a part of an unexpected shape
        return REPLY_PRIMING + count_text(_json([body.get(k) for k in ("system", "messages", "tools")]))


def _request_tokens(protocol: str, body: dict[str, Any]) -> int:
    tokens = REPLY_PRIMING
    tokens += sum(_message_tokens(m, protocol) for m in body.get("messages") or [] if isinstance(m, dict))
    if protocol == "anthropic" and body.get("system"):
        tokens += TOKENS_PER_MESSAGE + _content_tokens(body["system"], protocol)
    tokens += sum(_tool_tokens(t) for t in body.get("tools") or [] if isinstance(t, dict))
    return tokens


def estimate_body_output_tokens(protocol: str, body: dict[str, Any]) -> int:
    """Output tokens of a (possibly partial, collected) response body: text, thinking, tool calls."""
    try:
        return _body_output_tokens(protocol, body)
    except (AttributeError, KeyError, TypeError, ValueError):  # a part of an unexpected shape
        return count_text(_json(body.get("content" if protocol == "anthropic" else "choices")))


def _body_output_tokens(protocol: str, body: dict[str, Any]) -> int:
    if protocol == "anthropic":
        return sum(_part_tokens(block, protocol) for block in body.get("content") or [])
    tokens = 0
    for choice in body.get("choices") or []:
        message = choice.get("message") or {}
        tokens += _content_tokens(message.get("content"), protocol) + count_text(message.get("refusal") or "")
        for key in ("reasoning_content", "reasoning"):
            tokens += count_text(message.get(key) or "")
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            tokens += count_text(function.get("name", "")) + count_text(function.get("arguments", ""))
    return tokens
