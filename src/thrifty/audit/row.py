"""One request as the audit sees it, whatever log it came from.

Every source (thrifty's ledger, OpenAI-format JSONL, LiteLLM spend logs) is turned into
`AuditRow`s so that the waste analysis is written once. Bodies are reduced at ingestion to
what the analysis needs (a request fingerprint, the system prompt's hash and size, a short
prompt text for the near-duplicate search) so that memory stays bounded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from thrifty.protocol.view import content_text

#: Characters of prompt text kept per row for the list of repeated prompts.
PROMPT_CHARS = 1000
#: Characters of the question kept per row for the near-duplicate search: the head and the
#: tail of a longer one (a digest of the whole tells apart questions that differ in between).
QUESTION_CHARS = 8000
QUESTION_HEAD = 2000

#: Request fields that change the answer; the fingerprint of a request covers exactly these.
ANSWER_FIELDS = (
    "model", "messages", "system", "temperature", "top_p", "max_tokens", "max_completion_tokens",
    "tools", "tool_choice", "response_format", "seed", "stop", "n", "input", "prompt",
)  # fmt: skip


@dataclass(slots=True)
class AuditRow:
    """A request reduced to what the audit needs. Money in USD (float is exact enough for reports)."""

    line: int
    model: str
    ts: float | None = None
    route: str | None = None
    feature: str | None = None
    key: str | None = None
    task: str | None = None
    error: bool = False
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    #: USD from the log; None when the log has no cost (the analyzer prices it).
    cost: float | None = None
    latency_ms: float | None = None
    finish_reason: str | None = None
    #: 16-byte digest of the answer-relevant request fields; None when the log has no body.
    fingerprint: bytes | None = None
    prompt_text: str | None = None
    #: The question as the semantic cache finds it (`thrifty.cache.semantic.extract_question`),
    #: at most QUESTION_CHARS of it; None when the cache would not look at this request.
    question: str | None = None
    #: 16-byte digests of the question (whole) and of its namespace (everything else).
    question_digest: bytes | None = None
    namespace: bytes | None = None
    #: Why the semantic cache would pass this request by ("tools", "multi-turn", ...).
    question_skip: str | None = None
    system_hash: bytes | None = None
    system_chars: int = 0
    max_tokens: int | None = None
    temperature: float | None = None
    #: Levers that answered or saved (ledger rows only): lever -> USD saved.
    savings: dict[str, float] = field(default_factory=dict)
    cache: str | None = None
    answered_by: str | None = None


def digest(value: Any) -> bytes:
    """A stable 16-byte digest of a JSON value (keys sorted)."""
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()




def _question_settings() -> Any:
    """What the audit asks of the semantic cache's question-finding: the last user message is
    the question (earlier turns join the namespace), sampled requests count (a route can opt
    in), and no length limit (the audit compares only the part where questions differ)."""
    global _QUESTION_SETTINGS
    if _QUESTION_SETTINGS is None:
        from thrifty.cache.semantic import SemanticCacheSettings

        _QUESTION_SETTINGS = SemanticCacheSettings(
            enabled=True, question="last", allow_sampling=True, max_question_chars=10**9
        )
    return _QUESTION_SETTINGS


_QUESTION_SETTINGS: Any = None


def fill_question(row: AuditRow, body: dict[str, Any], protocol: str = "openai") -> None:
    """Set the question, its namespace, or the reason the semantic cache would skip it."""
    from thrifty.cache.semantic import extract_question

    found = extract_question(protocol, body, _question_settings())
    if isinstance(found, str):
        row.question_skip = found
        return
    text = found.text
    row.question_digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    if len(text) > QUESTION_CHARS:
        text = text[:QUESTION_HEAD] + "\n…\n" + text[-(QUESTION_CHARS - QUESTION_HEAD) :]
    row.question = text
    row.namespace = bytes.fromhex(found.namespace)[:16]


def fill_from_request(row: AuditRow, body: dict[str, Any], protocol: str = "openai") -> None:
    """Set the fingerprint, system prompt, prompt text and question of `row` from a request body."""
    row.fingerprint = digest({k: body[k] for k in ANSWER_FIELDS if k in body})
    fill_question(row, body, protocol)
    messages = body.get("messages")
    system_text = content_text(body.get("system")) if "system" in body else ""
    user_text = ""
    if isinstance(messages, list):
        sys_parts = [system_text] if system_text else []
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = m.get("role")
            if role in ("system", "developer"):
                sys_parts.append(content_text(m.get("content")))
            elif role == "user":
                user_text = content_text(m.get("content"))
        system_text = "\n".join(sys_parts)
    elif isinstance(body.get("prompt"), str):
        user_text = body["prompt"]
    elif isinstance(body.get("input"), str):
        user_text = body["input"]
    if system_text:
        row.system_hash = hashlib.blake2b(system_text.encode(), digest_size=16).digest()
        row.system_chars = len(system_text)
    if user_text:
        row.prompt_text = user_text[:PROMPT_CHARS]
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(mt, int) and not isinstance(mt, bool):
        row.max_tokens = mt
    temp = body.get("temperature")
    if isinstance(temp, int | float) and not isinstance(temp, bool):
        row.temperature = float(temp)


def fill_from_response(row: AuditRow, body: dict[str, Any]) -> None:
    """Set tokens and finish reason of `row` from an OpenAI or Anthropic response body."""
    usage = body.get("usage")
    if isinstance(usage, dict):
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            row.input_tokens = _int(usage.get("prompt_tokens"))
            row.output_tokens = _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                row.cached_tokens = _int(details.get("cached_tokens"))
        else:  # Anthropic: input_tokens excludes cache reads and writes
            read = _int(usage.get("cache_read_input_tokens"))
            write = _int(usage.get("cache_creation_input_tokens"))
            row.input_tokens = _int(usage.get("input_tokens")) + read + write
            row.cached_tokens = read
            row.output_tokens = _int(usage.get("output_tokens"))
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        fr = choices[0].get("finish_reason")
        row.finish_reason = fr if isinstance(fr, str) else None
    elif isinstance(body.get("stop_reason"), str):
        row.finish_reason = "length" if body["stop_reason"] == "max_tokens" else body["stop_reason"]
    if "error" in body and body.get("error"):
        row.error = True


def _int(v: Any) -> int:
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return max(v, 0)
    if isinstance(v, float):
        return max(int(v), 0)
    return 0
