"""Google Gemini through its native API (`generateContent`, `streamGenerateContent?alt=sse`).

The provider takes a chat-completions body (its `protocol` is `openai`, so the dispatcher
translates Anthropic requests to that first) and speaks Gemini itself: messages become
`contents` of user/model turns with `functionCall` / `functionResponse` parts, tools become
`functionDeclarations`, `response_format` becomes `responseMimeType` + `responseJsonSchema`,
`reasoning_effort` a `thinkingConfig`. Answers and streams come back as chat completions.

Usage is read as Gemini bills it: `promptTokenCount` includes `cachedContentTokenCount`
(so the cached part is split out and priced as a cache read, never billed twice), and
`thoughtsTokenCount` is output billed apart from `candidatesTokenCount` (so it is added to
the output and listed as reasoning). An answer without `usageMetadata` or `candidates` is a
shape Gemini does not document: a 502 saying so, never an unpriced row.

    - {name: gemini-flash, provider: gemini, model: gemini-2.5-flash, api_key_env: GEMINI_API_KEY}
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from thrifty.errors import TranslationError, UpstreamError
from thrifty.protocol.openai import usage_to_openai
from thrifty.providers.base import Provider
from thrifty.providers.transport import post, reading, scrub, sse_events
from thrifty.types import Context, EventStream, Reply, SSEEvent, Usage

__all__ = ["GeminiProvider", "gemini_request", "gemini_usage"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter"}
_EFFORT = {"minimal": 0, "low": 1024, "medium": 8192, "high": 24576}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def gemini_usage(meta: Any) -> Usage:
    """Gemini's `usageMetadata` as billed token classes."""
    if not isinstance(meta, dict):
        return Usage()
    prompt, cached = _int(meta.get("promptTokenCount")), _int(meta.get("cachedContentTokenCount"))
    thoughts = _int(meta.get("thoughtsTokenCount"))
    return Usage(input_tokens=max(prompt - cached, 0), cache_read_tokens=min(cached, prompt),
                 output_tokens=_int(meta.get("candidatesTokenCount")) + thoughts, reasoning_tokens=thoughts)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part.get("image_url"), dict) else ""
            if not url.startswith("data:") or ";base64," not in url:
                raise TranslationError(f"{where}: Gemini takes images as base64 data URLs here")
            mime, data = url[5:].split(";base64,", 1)
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        else:
            raise TranslationError(f"{where}: content part type {kind!r} cannot be sent to this model")
    return parts


def gemini_request(body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions request as a Gemini `generateContent` request."""
    if (body.get("n") or 1) > 1:
        raise TranslationError("n > 1 is not supported by this model")
    for key in ("logprobs", "top_logprobs", "audio", "web_search_options"):
        if body.get(key) not in (None, False, 0):
            raise TranslationError(f"'{key}' cannot be sent to this model")
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name (Gemini answers by name)

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})

    for i, m in enumerate(body.get("messages") or []):
        role, where = m.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.append(_text(m.get("content")))
        elif role == "user":
            add("user", _user_parts(m.get("content"), where))
        elif role == "assistant":
            parts: list[dict[str, Any]] = [{"text": t} for t in [_text(m.get("content"))] if t]
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                names[call.get("id", "")] = fn.get("name", "")
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = {"arguments": fn.get("arguments")}
                parts.append({"functionCall": {"name": fn.get("name", ""), "args": args if isinstance(args, dict) else
                                               {"value": args}}})
            add("model", parts)
        elif role == "tool":
            call_id = m.get("tool_call_id", "")
            if call_id not in names:
                raise TranslationError(f"{where}: a tool result for a call ({call_id!r}) this conversation never made")
            add("user", [{"functionResponse": {"name": names[call_id], "response": {"result": _text(m.get("content"))}}}])
        else:
            raise TranslationError(f"{where}: role {role!r} cannot be sent to this model")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        if body.get(src) is not None:
            config[dst] = body[src]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    if body.get("reasoning_effort") in _EFFORT:
        config["thinkingConfig"] = {"thinkingBudget": _EFFORT[body["reasoning_effort"]]}
    if config:
        out["generationConfig"] = config
    tools = body.get("tools") or []
    if tools:
        if any(t.get("type", "function") != "function" for t in tools):
            raise TranslationError("tools: only function tools can be sent to this model")
        out["tools"] = [{"functionDeclarations": [
            {k: v for k, v in (("name", t["function"]["name"]), ("description", t["function"].get("description")),
                               ("parameters", t["function"].get("parameters"))) if v is not None} for t in tools]}]
        choice = body.get("tool_choice")
        mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice if isinstance(choice, str) else "")
        if isinstance(choice, dict):
            out["toolConfig"] = {"functionCallingConfig": {
                "mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name", "")]}}
        elif mode:
            out["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
    return out


def _bad_shape(name: str, why: str) -> UpstreamError:
    return UpstreamError(502, f"model {name!r} answered in a shape Gemini does not document: {why}",
                         error_type="api_error")


def _message(parts: list[Any], counter: list[int]) -> tuple[str, list[dict[str, Any]], str]:
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            fc = part["functionCall"] or {}
            counter[0] += 1
            calls.append({"id": fc.get("id") or f"call_gemini_{counter[0]}_{uuid.uuid4().hex[:8]}", "type": "function",
                          "function": {"name": fc.get("name", ""), "arguments": json.dumps(fc.get("args") or {})}})
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), calls, "".join(thoughts)


class GeminiProvider(Provider):
    protocol = "openai"

    def _url(self, stream: bool) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base}/v1beta/models/{self.config.upstream_model}:{action}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        key = self.config.api_key()
        if key:
            headers["x-goog-api-key"] = key
        return headers

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        native = gemini_request(body)
        streaming = bool(body.get("stream"))
        key = self.config.api_key()
        answer = await post(self.name, self._url(streaming), native, self._headers(), streaming=streaming,
                            timeout=self.config.timeout, connect_timeout=self.config.connect_timeout, secret=key)
        if isinstance(answer, dict):
            return self._complete(answer)
        stream: EventStream = EventStream(self._relay(answer, lambda: stream))
        return Reply(status=answer.status, stream=stream)

    def _complete(self, answer: dict[str, Any]) -> Reply:
        candidates = answer.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
            raise _bad_shape(self.name, "no candidates")
        if not isinstance(answer.get("usageMetadata"), dict):
            raise _bad_shape(self.name, "no usageMetadata, so the call cannot be billed")
        first = candidates[0]
        text, calls, thoughts = _message(((first.get("content") or {}).get("parts")) or [], [0])
        usage = gemini_usage(answer["usageMetadata"])
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = thoughts
        finish = "tool_calls" if calls else _FINISH.get(first.get("finishReason") or "STOP", "stop")
        body = {"id": "chatcmpl-" + str(answer.get("responseId") or uuid.uuid4().hex), "object": "chat.completion",
                "created": int(time.time()), "model": answer.get("modelVersion") or self.config.upstream_model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage_to_openai(usage)}
        return Reply(status=200, body=body, usage=usage)

    async def _relay(self, resp: aiohttp.ClientResponse, holder: Any) -> AsyncIterator[SSEEvent]:
        stream: EventStream = holder()
        ident, created, counter = "chatcmpl-" + uuid.uuid4().hex, int(time.time()), [0]
        model, finish, calls_seen = self.config.upstream_model, None, 0

        def chunk(delta: dict[str, Any] | None, reason: str | None = None, **extra: Any) -> SSEEvent:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]
            return SSEEvent(data={"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                                  "choices": choices, **extra})

        async with reading(resp, stream, self.name):
            yield chunk({"role": "assistant", "content": ""})
            async for ev in sse_events(resp):
                data = ev.data
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    err = data["error"]
                    stream.error = scrub(str(err.get("message") if isinstance(err, dict) else err), self.config.api_key())
                    return
                model = data.get("modelVersion") or model
                if isinstance(data.get("usageMetadata"), dict):
                    stream.usage = gemini_usage(data["usageMetadata"])
                for candidate in data.get("candidates") or []:
                    if not isinstance(candidate, dict):
                        continue
                    text, calls, thoughts = _message(((candidate.get("content") or {}).get("parts")) or [], counter)
                    if thoughts:
                        yield chunk({"reasoning_content": thoughts})
                    if text:
                        yield chunk({"content": text})
                    for call in calls:
                        yield chunk({"tool_calls": [{"index": calls_seen, **call}]})
                        calls_seen += 1
                    if candidate.get("finishReason"):
                        finish = "tool_calls" if calls_seen else _FINISH.get(candidate["finishReason"], "stop")
            if finish is None:
                return  # cut short: `reading` records it
            yield chunk({}, finish)
            yield chunk(None, usage=usage_to_openai(stream.usage))
            yield SSEEvent(data="[DONE]")
            stream.complete = True
