"""Translation between OpenAI chat completions and Anthropic Messages, both ways.

Routing may serve a request on a model that speaks the other protocol, so requests,
complete responses, streams (see `thrifty.protocol.streams`) and errors (see
`thrifty.protocol.errors`) all translate. A feature is carried to its native equivalent
where one exists (OpenAI `response_format` <-> Anthropic `output_config.format`, legacy
`functions` -> tools); it is dropped only when it merely tunes sampling or delivery (`seed`,
penalties, `top_k`, `reasoning_effort`, thinking blocks, `service_tier`, `prediction`), and
it is refused with a `TranslationError` (a 400 naming it) when dropping it would change the
answer: `n > 1`, audio, `logprobs`, web search and other server tools, `mcp_servers`,
`container`. Anthropic needs `max_tokens`; an OpenAI request without one gets
`default_max_tokens` (the `translation.default_max_tokens` setting), and the dispatcher
says so in the `X-Thrifty-Default-Max-Tokens` header.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from thrifty.errors import TranslationError
from thrifty.protocol.anthropic import usage_from_anthropic, usage_to_anthropic
from thrifty.protocol.errors import (
    anthropic_error,
    anthropic_error_to_openai,
    error_message,
    openai_error,
    openai_error_to_anthropic,
)
from thrifty.protocol.mapping import anthropic_id, finish_reason_for, openai_id, stop_reason_for
from thrifty.protocol.openai import usage_from_openai, usage_to_openai
from thrifty.protocol.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream

__all__ = [
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "TranslationError",
    "anthropic_error",
    "anthropic_error_to_openai",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "error_message",
    "legacy_function_answer",
    "openai_error",
    "openai_error_to_anthropic",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
]

#: Anthropic requires `max_tokens`; OpenAI clients often leave it out.
DEFAULT_MAX_TOKENS = 4096

_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.DOTALL)


# ---------------------------------------------------------------- OpenAI request -> Anthropic


def _text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """Text blocks from an OpenAI string or list of text parts (system, tool and assistant content)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if part.get("type") in ("text", "refusal"):
            block: dict[str, Any] = {"type": "text", "text": part.get("text") or part.get("refusal") or ""}
            if part.get("cache_control"):
                block["cache_control"] = part["cache_control"]
            if block["text"]:
                blocks.append(block)
        else:
            raise TranslationError(
                f"{where}: content part type {part.get('type')!r} cannot be sent to this model"
            )
    return blocks


def _image_block(image_url: dict[str, Any] | str) -> dict[str, Any]:
    url = image_url if isinstance(image_url, str) else image_url.get("url", "")
    match = _DATA_URL.match(url)
    if match:
        return {"type": "image", "source": {"type": "base64", "media_type": match[1], "data": match[2]}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("image_url must be an http(s) URL or a base64 data URL")


def _user_blocks(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part.get("text", "")}
        elif kind == "image_url":
            block = _image_block(part.get("image_url") or {})
        elif kind == "file" and _DATA_URL.match((part.get("file") or {}).get("file_data", "")):
            match = _DATA_URL.match(part["file"]["file_data"])
            assert match is not None
            block = {
                "type": "document",
                "source": {"type": "base64", "media_type": match[1], "data": match[2]},
            }
        else:
            raise TranslationError(f"messages: content part type {kind!r} cannot be sent to this model")
        if part.get("cache_control"):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_input(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the object Anthropic wants; unparsable ones are kept under `arguments`."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def _append(messages: list[dict[str, Any]], role: str, blocks: str | list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one when the role repeats (Anthropic alternates)."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        last = messages[-1]
        if isinstance(last["content"], str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        last["content"] += [{"type": "text", "text": blocks}] if isinstance(blocks, str) else blocks
        return
    messages.append({"role": role, "content": blocks})


def _output_format(response_format: Any) -> dict[str, Any] | None:
    """OpenAI `response_format` as Anthropic's native structured output (`output_config.format`),
    which constrains decoding to the schema (so it is always strict)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":  # any JSON object: the schema that admits exactly those
        return {"type": "json_schema", "schema": {"type": "object"}}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return {"type": "json_schema", "schema": spec.get("schema") or {"type": "object"}}
    raise TranslationError(f"response_format type {kind!r} cannot be sent to this model")


#: OpenAI request fields with no Anthropic equivalent whose loss would change the answer.
_OPENAI_ONLY = {
    "audio": "audio output ('audio')",
    "web_search_options": "web search ('web_search_options', a server tool)",
    "logprobs": "token log probabilities ('logprobs')",
    "top_logprobs": "token log probabilities ('top_logprobs')",
}


def _refuse_openai_only(body: dict[str, Any]) -> None:
    if "audio" in (body.get("modalities") or []):
        raise TranslationError("audio output (modalities: audio) cannot be sent to this model")
    for key, what in _OPENAI_ONLY.items():
        if body.get(key) not in (None, False, 0):  # web_search_options: {} turns search on
            raise TranslationError(f"{what} cannot be sent to this model")


def _legacy_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The request's tools and tool choice, legacy `functions`/`function_call` included."""
    functions = body.get("functions")
    if not functions:
        return list(body.get("tools") or []), body.get("tool_choice")
    if body.get("tools"):
        raise TranslationError("'functions' and 'tools' cannot be sent together; use 'tools'")
    choice = body.get("function_call")
    if isinstance(choice, dict):
        choice = {"type": "function", "function": {"name": choice.get("name", "")}}
    return [{"type": "function", "function": f} for f in functions], choice


def openai_request_to_anthropic(body: dict[str, Any], default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """An OpenAI chat completions request as an Anthropic Messages request (same `model` value);
    `default_max_tokens` is the output cap when the request sets none."""
    if (body.get("n") or 1) > 1:
        raise TranslationError("n > 1 is not supported by this model")
    _refuse_openai_only(body)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    legacy_calls: dict[str, str] = {}  # legacy function name -> the id given to its latest call
    for i, message in enumerate(body.get("messages") or []):
        role = message.get("role")
        content = message.get("content")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system += _text_parts(content, where)
        elif role == "user":
            _append(messages, "user", _user_blocks(content))
        elif role == "function":  # the legacy form of a tool result: it answers the latest call by name
            name = message.get("name", "")
            if name not in legacy_calls:
                raise TranslationError(f"{where}: role 'function' answers no earlier function_call named {name!r}")
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": legacy_calls[name],
                                        "content": content if isinstance(content, str) else _text_parts(content, where)}])
        elif role == "assistant":
            blocks = _text_parts(content, where)
            legacy = message.get("function_call")
            if isinstance(legacy, dict):
                call_id = f"call_legacy_{i}"
                legacy_calls[legacy.get("name", "")] = call_id
                blocks.append({"type": "tool_use", "id": call_id, "name": legacy.get("name", ""),
                               "input": _tool_input(legacy.get("arguments") or "")})
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": function.get("name", ""),
                        "input": _tool_input(function.get("arguments") or ""),
                    }
                )
            _append(messages, "assistant", blocks)
        elif role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", "")}
            result["content"] = content if isinstance(content, str) else _text_parts(content, where)
            _append(messages, "user", [result])
        else:
            raise TranslationError(f"{where}: role {role!r} cannot be sent to this model")

    out: dict[str, Any] = {"model": body.get("model")}
    if system:
        cached = any("cache_control" in block for block in system)
        out["system"] = system if cached else "\n\n".join(block["text"] for block in system)
    out["messages"] = messages
    out["max_tokens"] = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    output_format = _output_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # Anthropic's range is 0..1
    if body.get("top_p") is not None and body["top_p"] != 1:  # 1 is a no-op; recent Claude models
        out["top_p"] = body["top_p"]  # refuse temperature and top_p together
    all_tools, tool_choice = _legacy_tools(body)
    tools = [t for t in all_tools if t.get("type", "function") == "function"]
    if len(tools) != len(all_tools):
        raise TranslationError("tools: only function tools can be sent to this model")
    if tools:
        out["tools"] = [_anthropic_tool(t["function"]) for t in tools]
        choice = _anthropic_tool_choice(tool_choice)
        if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if "stream" in body:
        out["stream"] = bool(body["stream"])
    return out


def _anthropic_tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        tool["description"] = function["description"]
    tool["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return tool


def _anthropic_tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    raise TranslationError(f"tool_choice {choice!r} cannot be sent to this model")


# ---------------------------------------------------------------- Anthropic request -> OpenAI


def _blocks_text(content: Any) -> str:
    """The text of an Anthropic string or block list, other blocks left out."""
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or [] if b.get("type") == "text")


def _openai_part(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    source = block.get("source") or {}
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image" and source.get("type") == "base64":
        return {
            "type": "image_url",
            "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"},
        }
    if kind == "image" and source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    if kind == "document" and source.get("type") == "base64":
        data_url = f"data:{source['media_type']};base64,{source['data']}"
        return {
            "type": "file",
            "file": {"filename": block.get("title") or "document.pdf", "file_data": data_url},
        }
    if kind == "document" and source.get("type") == "text":
        return {"type": "text", "text": source.get("data", "")}
    raise TranslationError(
        f"messages: content block {kind!r} ({source.get('type')}) cannot be sent to this model"
    )


def _tool_message(block: dict[str, Any]) -> dict[str, Any]:
    text = _blocks_text(block.get("content"))
    if block.get("is_error"):
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text}


def _openai_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    role, content = message.get("role"), message.get("content")
    if role == "system":  # a system turn inside the conversation (text only)
        return [{"role": "system", "content": _blocks_text(content)}]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = [b for b in content or [] if b.get("type") not in ("thinking", "redacted_thinking")]
    if role == "assistant":
        text, calls = _text_and_calls(blocks)
        others = [b["type"] for b in blocks if b.get("type") not in ("text", "tool_use")]
        if others:
            raise TranslationError(f"messages: assistant block {others[0]!r} cannot be sent to this model")
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            out["tool_calls"] = calls
        return [out] if text or calls else []
    # user: tool results become tool messages, which must come right after the tool calls
    results = [_tool_message(b) for b in blocks if b.get("type") == "tool_result"]
    parts = [_openai_part(b) for b in blocks if b.get("type") != "tool_result"]
    if not parts:
        return results
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*results, {"role": "user", "content": parts[0]["text"]}]
    return [*results, {"role": "user", "content": parts}]


def anthropic_request_to_openai(body: dict[str, Any], max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat completions request (same `model` value).

    `max_tokens_field` names the limit field the upstream wants (`max_completion_tokens`
    for OpenAI's reasoning models, `max_tokens` for most OpenAI-compatible servers).
    """
    for key, what in (("mcp_servers", "MCP servers ('mcp_servers')"), ("container", "code-execution containers "
                                                                           "('container')")):
        if body.get(key):
            raise TranslationError(f"{what} cannot be sent to this model")
    messages: list[dict[str, Any]] = []
    system = _blocks_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        messages += _openai_messages(message)
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens"):
        out[max_tokens_field] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    tools = body.get("tools") or []
    if tools:
        out["tools"] = [_openai_tool(t) for t in tools]
        choice = body.get("tool_choice") or {"type": "auto"}
        out["tool_choice"] = _openai_tool_choice(choice)
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    user_id = (body.get("metadata") or {}).get("user_id")
    if user_id:
        out["user"] = user_id
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if fmt:
        out["response_format"] = _response_format(fmt)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    elif "stream" in body:
        out["stream"] = False
    return out


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """Anthropic structured output (`output_config.format`) as OpenAI's strict json_schema."""
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise TranslationError(f"output format {json.dumps(fmt)[:100]} cannot be sent to this model")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}


def _openai_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom"):
        raise TranslationError(f"tools: server tool {tool.get('type')!r} cannot be sent to this model")
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _openai_tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(kind or "auto", "auto")


# ---------------------------------------------------------------- responses


def openai_response_to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` body (its first choice) as an Anthropic `message` body."""
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    for piece in (text, message.get("refusal")):
        if piece:
            content.append({"type": "text", "text": piece})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": _tool_input(function.get("arguments") or ""),
            }
        )
    return {
        "id": anthropic_id(body.get("id") or ""),
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": content,
        "stop_reason": stop_reason_for(choices[0].get("finish_reason")),
        "stop_sequence": None,
        "usage": usage_to_anthropic(usage_from_openai(body.get("usage"))),
    }


def _text_and_calls(blocks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """An Anthropic assistant turn's text and its tool_use blocks as OpenAI tool_calls."""
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {"name": b.get("name", ""), "arguments": json.dumps(b.get("input") or {}, ensure_ascii=False)},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    return text, calls


def anthropic_response_to_openai(body: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """An Anthropic `message` body as a `chat.completion` body."""
    blocks = body.get("content") or []
    text, calls = _text_and_calls(blocks)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": openai_id(body.get("id") or ""),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_for(body.get("stop_reason")),
            }
        ],
        "usage": usage_to_openai(usage_from_anthropic(body.get("usage"))),
    }


def legacy_function_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A translated `chat.completion` as a client of legacy `functions` expects it: the first
    tool call as `message.function_call`, finish reason `function_call`."""
    for choice in body.get("choices") or []:
        message = choice.get("message") or {}
        calls = message.pop("tool_calls", None) or []
        if calls:
            message["function_call"] = dict(calls[0].get("function") or {})
            if choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "function_call"
    return body
