"""Request checks that name the problem, in terms a person can act on.

Only what thrifty needs to route and bill is checked; every other field passes through to
the provider untouched.
"""

from __future__ import annotations

from typing import Any

from thrifty.errors import BadRequest

__all__ = ["MAX_DEPTH", "BadRequest", "check_depth", "validate_anthropic", "validate_openai"]


#: How deep a request's JSON may nest. orjson reads 1024 levels but writes only 254, and no
#: real request comes near either.
MAX_DEPTH = 128


def check_depth(raw: bytes, body: Any) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH. The cost follows the number of objects and
    arrays, not the bytes (chat bodies are mostly text); a body too short to nest that deep
    is not walked at all."""
    if len(raw) >= 2 * MAX_DEPTH:
        _walk(body, 1)


def _walk(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(f"the request body nests JSON deeper than {MAX_DEPTH} levels")
    for child in value.values() if isinstance(value, dict) else value:
        if isinstance(child, dict | list):
            _walk(child, depth + 1)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _expect(body: dict[str, Any], key: str, types: tuple[type, ...], what: str) -> None:
    if key in body and body[key] is not None:
        value = body[key]
        if isinstance(value, bool) and bool not in types:
            raise BadRequest(f"'{key}' must be {what}, got boolean", key)
        if not isinstance(value, types):
            raise BadRequest(f"'{key}' must be {what}, got {_type_name(value)}", key)


_Fields = dict[str, tuple[tuple[type, ...], str]]

_COMMON_FIELDS: _Fields = {
    "stream": ((bool,), "a boolean"),
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "max_tokens": ((int,), "an integer"),
    "tools": ((list,), "an array"),
    "metadata": ((dict,), "an object"),
}
_OPENAI_FIELDS: _Fields = {
    "max_completion_tokens": ((int,), "an integer"),
    "n": ((int,), "an integer"),
    "stream_options": ((dict,), "an object"),
    "response_format": ((dict,), "an object"),
    "stop": ((str, list), "a string or an array of strings"),
}


def _expect_all(body: dict[str, Any], specs: _Fields) -> None:
    """`_expect` for each field of `specs` the body has (bodies carry few of them)."""
    for key, (types, what) in specs.items():
        if key in body:
            _expect(body, key, types, what)


def _common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise BadRequest("missing required field 'model'", "model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("'model' must be a non-empty string", "model")
    if "messages" not in body:
        raise BadRequest("missing required field 'messages'", "messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise BadRequest(f"'messages' must be an array, got {_type_name(messages)}", "messages")
    if not messages:
        raise BadRequest("'messages' must contain at least one message", "messages")
    _expect_all(body, _COMMON_FIELDS)
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] < 1:
        raise BadRequest("'max_tokens' must be at least 1", "max_tokens")
    temp = body.get("temperature")
    if isinstance(temp, int | float) and not isinstance(temp, bool) and not 0 <= temp <= 2:
        raise BadRequest("'temperature' must be between 0 and 2", "temperature")


def validate_openai(body: dict[str, Any]) -> None:
    _common(body)
    _expect_all(body, _OPENAI_FIELDS)
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict):
            raise BadRequest(f"'messages[{i}]' must be an object, got {_type_name(m)}", f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise BadRequest(
                f"'messages[{i}].role' must be one of system, developer, user, assistant, tool; got {role!r}",
                f"messages[{i}].role",
            )
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadRequest(
                f"'messages[{i}].content' must be a string or an array of content parts, got {_type_name(content)}",
                f"messages[{i}].content",
            )
        if content is None and role in ("user", "system", "developer", "tool"):
            raise BadRequest(f"'messages[{i}].content' is required for role {role}", f"messages[{i}].content")


def validate_anthropic(body: dict[str, Any]) -> None:
    _common(body)
    if "max_tokens" not in body:
        raise BadRequest("missing required field 'max_tokens'", "max_tokens")
    _expect(body, "system", (str, list), "a string or an array of text blocks")
    _expect(body, "stop_sequences", (list,), "an array of strings")
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict):
            raise BadRequest(f"messages.{i}: must be an object, got {_type_name(m)}", f"messages.{i}")
        if m.get("role") not in ("user", "assistant", "system"):  # Claude Code sends system turns mid-conversation
            raise BadRequest(f"messages.{i}.role: must be 'user', 'assistant' or 'system', got {m.get('role')!r}",
                             f"messages.{i}.role")
        if not isinstance(m.get("content"), str | list):
            raise BadRequest(
                f"messages.{i}.content: must be a string or an array of content blocks", f"messages.{i}.content"
            )
