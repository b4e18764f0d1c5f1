"""The OpenAI Responses API in terms of chat completions, both ways.

thrifty's levers (cache, dedup, compression, caps, routing) and its providers all work on
chat-completions bodies, and every provider protocol already translates to and from that
shape. So a Responses request is turned into the chat-completions request that means the
same thing, runs through the ordinary pipeline, and the chat answer is turned back into a
`response` object. A conversation continued with `previous_response_id` is sent as the
whole item history, rebuilt from the stored earlier turns.

What has no chat-completions equivalent is refused with a 400 that names it (built-in
tools such as `web_search`, `background` mode, stored prompts, conversations); nothing is
dropped silently. `reasoning` items of earlier turns are the only thing not sent back: chat
completions has no field for a model's earlier reasoning, and it does not change the
answer's meaning.

For a model that serves the Responses API itself the request is passed through
(`native_request`); its chat form is still built, for the levers to read, but leniently:
what it cannot say is listed (`skipped`) instead of refused, and refused only if the
request ends up at a model without the Responses API (thrifty.pipeline.dispatch).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from thrifty.errors import BadRequest
from thrifty.protocol.openai import usage_from_openai

__all__ = [
    "ENCRYPTED_REASONING",
    "RESPONSE_FIELDS",
    "chat_request",
    "input_items",
    "native_request",
    "new_id",
    "reasons",
    "output_items",
    "response_object",
    "response_usage",
]

#: Request fields a `response` object echoes back, with their defaults.
RESPONSE_FIELDS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
    "truncation": "disabled",
    "user": None,
}

#: Request fields refused because chat completions has nothing that does what they do.
_REFUSED = {
    "background": "background mode (thrifty answers in the foreground; drop 'background')",
    "conversation": "conversation objects (use previous_response_id)",
    "prompt": "stored prompt templates",
}


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: `resp_`, `msg_`, `fc_` ... and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


# ------------------------------------------------------------------ request -> items


def _content_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's content as a list of Responses content parts."""
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or an array of content parts", "input")
    return [p for p in content if isinstance(p, dict)]


def input_items(value: Any, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The request's `input` as a list of items, each with an `id` (a string input is one
    user message). Items are checked for the fields translation needs; an item type chat
    cannot carry is refused, or, with `skipped` (a pass-through), kept as is and listed."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise BadRequest("'input' must be a string or an array of input items", "input")
    items: list[dict[str, Any]] = []
    for i, raw in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{where} must be an object", "input")
        kind = raw.get("type") or ("message" if "role" in raw else None)
        item = {**raw, "type": kind}
        if kind == "message":
            if raw.get("role") not in ("user", "assistant", "system", "developer"):
                raise BadRequest(f"{where}.role must be user, assistant, system or developer", "input")
            item["content"] = _content_parts(raw.get("content"), where)
            item.setdefault("id", new_id("msg"))
            item.setdefault("status", "completed")
        elif kind == "function_call":
            for key in ("call_id", "name"):
                if not isinstance(raw.get(key), str):
                    raise BadRequest(f"{where}.{key} must be a string", "input")
            if not isinstance(raw.get("arguments", ""), str):
                raise BadRequest(f"{where}.arguments must be a string of JSON", "input")
            item.setdefault("id", new_id("fc"))
            item.setdefault("status", "completed")
        elif kind == "function_call_output":
            if not isinstance(raw.get("call_id"), str):
                raise BadRequest(f"{where}.call_id must be a string", "input")
            output = raw.get("output")
            if not isinstance(output, str | list):
                raise BadRequest(f"{where}.output must be a string or an array of content parts", "input")
            item.setdefault("id", new_id("fco"))
            item.setdefault("status", "completed")
        elif kind == "reasoning":
            item.setdefault("id", new_id("rs"))
        elif skipped is not None and isinstance(kind, str):
            item = dict(raw)  # a built-in tool's call or output, an item reference: passed as sent
            skipped.append(f"input items of type {kind!r}")
        else:
            raise BadRequest(f"{where}: input items of type {kind!r} cannot be served by thrifty "
                             "(it serves messages, function_call, function_call_output and reasoning items)",
                             "input")
        items.append(item)
    return items


# ------------------------------------------------------------------ items -> chat


def _chat_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise BadRequest(f"{where}: input_image needs an image_url (file ids are not served by thrifty)", "input")
        image: dict[str, Any] = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and isinstance(part.get("file_data"), str):
        file: dict[str, Any] = {"file_data": part["file_data"]}
        if part.get("filename"):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise BadRequest(f"{where}: content part type {kind!r} cannot be served by thrifty", "input")


def _message(item: dict[str, Any], where: str, skipped: list[str] | None = None) -> dict[str, Any]:
    role = item["role"]
    parts = []
    for p in item.get("content") or []:
        try:
            parts.append(_chat_part(p, where))
        except BadRequest:
            if skipped is None:
                raise
            skipped.append(f"content parts of type {p.get('type')!r}")
    if role != "user" and any(p["type"] != "text" for p in parts):
        raise BadRequest(f"{where}: a {role} message may hold only text", "input")
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _tool_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))


def chat_messages(items: list[dict[str, Any]], instructions: Any,
                  skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The chat-completions `messages` that a list of Responses items amounts to.

    Consecutive function calls become one assistant turn with several `tool_calls`, joined
    to the assistant text just before them, as a chat model emits them."""
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type")
        if kind == "message":
            messages.append(_message(item, where, skipped))
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _tool_output(item.get("output"))})
        # reasoning items: chat completions cannot carry them back (see the module docstring)
    return messages


def _chat_tools(tools: Any, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            if skipped is not None and isinstance(kind, str):
                skipped.append(f"the built-in tool {kind!r}")
                continue
            raise BadRequest(f"tools[{i}]: tool type {kind!r} cannot be served by thrifty; only function tools "
                             "can (built-in tools run inside OpenAI's servers)", "tools")
        if not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools[{i}].name must be a string", "tools")
        function: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
        out.append({"type": "function", "function": function})
    return out


def _chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest(f"tool_choice {json.dumps(choice)[:100]} cannot be served by thrifty "
                     "(use auto, none, required or a function)", "tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise BadRequest("'text' must be an object", "text")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict) or not isinstance(fmt.get("name"), str):
            raise BadRequest("text.format of type json_schema needs a 'name' and a 'schema' object", "text")
        spec: dict[str, Any] = {"name": fmt["name"], "schema": fmt["schema"]}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        return {"type": "json_schema", "json_schema": spec}
    raise BadRequest(f"text.format {json.dumps(fmt)[:100]} cannot be served by thrifty", "text")


def chat_request(body: dict[str, Any], history: list[dict[str, Any]], items: list[dict[str, Any]],
                 skipped: list[str] | None = None) -> dict[str, Any]:
    """The chat-completions request for Responses request `body`, whose earlier turns are
    `history` (items) and whose own input is `items`. With `skipped` (a pass-through), what
    chat cannot say is left out of the chat form and listed there instead of refused."""
    for key, what in _REFUSED.items():
        if body.get(key):
            if skipped is not None and key == "prompt":  # a stored prompt lives on the upstream
                skipped.append("'prompt' (a stored prompt template)")
                continue
            raise BadRequest(f"'{key}': {what} cannot be served by thrifty", key)
    chat: dict[str, Any] = {"model": body["model"],
                            "messages": chat_messages([*history, *items], body.get("instructions"), skipped)}
    if body.get("tools"):
        tools = _chat_tools(body["tools"], skipped)
        if tools:
            chat["tools"] = tools
        if body.get("tool_choice") is not None:
            try:
                chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
            except BadRequest:
                if skipped is None:
                    raise
                skipped.append(f"tool_choice {json.dumps(body['tool_choice'])[:80]}")
        if body.get("parallel_tool_calls") is False:
            chat["parallel_tool_calls"] = False
    try:
        fmt = _response_format(body.get("text"))
    except BadRequest:
        if skipped is None:
            raise
        fmt = None
        skipped.append("this text.format")
    if fmt is not None:
        chat["response_format"] = fmt
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("'max_output_tokens' must be a positive integer", "max_output_tokens")
        chat["max_completion_tokens"] = limit
    for key in ("temperature", "top_p", "user", "service_tier", "top_logprobs"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("top_logprobs"):
        chat["logprobs"] = True
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


# ------------------------------------------------------------------ pass-through

#: What thrifty asks a native upstream to include, so that reasoning can be sent back.
ENCRYPTED_REASONING = "reasoning.encrypted_content"

#: Items whose ids thrifty may have made up (what the client said): never sent upstream,
#: which only knows its own items' ids.
_CLIENT_ITEMS = {"function_call_output"}


def _replayable(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("type") in _CLIENT_ITEMS or (item.get("type") == "message" and item.get("role") != "assistant"):
        return {k: v for k, v in item.items() if k != "id"}
    return item


#: Upstream model names of OpenAI's reasoning models (which alone accept an `include` of
#: encrypted reasoning; others answer 400): o1, o3, o4-mini, gpt-5, codex-mini, ...
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5(?!-chat)|codex)")


def reasons(upstream_model: str, body: dict[str, Any]) -> bool:
    """Whether a native request is for a reasoning model: it names `reasoning`, or its
    upstream model is of a reasoning family."""
    reasoning = body.get("reasoning")
    asked = isinstance(reasoning, dict) and any(v is not None for v in reasoning.values())
    return asked or bool(_REASONING_MODEL.match(upstream_model.rsplit("/", 1)[-1]))


def native_request(body: dict[str, Any], history: list[dict[str, Any]], reasoning: bool = True) -> dict[str, Any]:
    """The request a native Responses upstream gets: the client's, with the stored earlier
    turns (`history`: inputs and outputs, reasoning items with their encrypted content)
    put in front of its input, stateless (`store: false`, thrifty keeps the conversation),
    and, for a `reasoning` model, asking for encrypted reasoning so the next turn can send
    it back."""
    upstream = {k: v for k, v in body.items() if k not in ("previous_response_id", "store")}
    current = body.get("input")
    if isinstance(current, str):
        current = [{"role": "user", "content": current}]
    # a reasoning item without encrypted content (from a translated turn) cannot be replayed
    # statelessly: its id is unknown upstream
    earlier = [_replayable(i) for i in history if i.get("type") != "reasoning" or i.get("encrypted_content")]
    upstream["input"] = [*earlier, *(current or [])]
    upstream["store"] = False
    include = body.get("include")
    include = [*include] if isinstance(include, list) else []
    if reasoning and ENCRYPTED_REASONING not in include:
        include.append(ENCRYPTED_REASONING)
    if include:
        upstream["include"] = include
    return upstream


# ------------------------------------------------------------------ chat answer -> response


def output_items(chat: dict[str, Any]) -> list[dict[str, Any]]:
    """The Responses output items of a `chat.completion` body (its first choice)."""
    choices = chat.get("choices") or [{}]
    message = (choices[0] or {}).get("message") or {}
    items: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        items.append({"type": "reasoning", "id": new_id("rs"),
                      "summary": [{"type": "summary_text", "text": reasoning}]})
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if isinstance(content, str) and content:
        parts.append({"type": "output_text", "text": content, "annotations": message.get("annotations") or [],
                      "logprobs": _logprobs((choices[0] or {}).get("logprobs"))})
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        items.append({"type": "message", "id": new_id("msg"), "status": "completed", "role": "assistant",
                      "content": parts})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append({"type": "function_call", "id": new_id("fc"), "call_id": call.get("id") or new_id("call"),
                      "name": function.get("name", ""), "arguments": function.get("arguments") or "",
                      "status": "completed"})
    return items


def _logprobs(value: Any) -> list[Any]:
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        return list(value["content"])
    return []


def response_usage(usage: Any) -> dict[str, Any]:
    """A chat `usage` block as the Responses one."""
    u = usage_from_openai(usage)
    return {
        "input_tokens": u.total_input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_input_tokens + u.output_tokens,
    }


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(
    request: dict[str, Any],
    response_id: str,
    created_at: int | None,
    output: list[dict[str, Any]],
    finish_reason: str | None,
    usage: Any,
    *,
    model: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """The `response` object: the request's echoed settings, `output` and `usage`."""
    reason = _INCOMPLETE.get(finish_reason or "")
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()) if created_at is None else created_at,
        "status": status or ("incomplete" if reason else "completed"),
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": model or request.get("model", ""),
        "output": output,
        "usage": response_usage(usage) if usage is not None else None,
    }
    for key, default in RESPONSE_FIELDS.items():
        value = request.get(key)
        body[key] = default if value is None else value
    return body
