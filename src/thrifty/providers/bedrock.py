"""AWS Bedrock through the Converse API (`/model/<id>/converse`, `/converse-stream`).

Requests are signed with SigV4 by botocore (credentials from the usual AWS chain:
environment, profile, instance role), or carry a Bedrock API key as a bearer token when
the model names one with `api_key_env`. The provider takes a chat-completions body (its
`protocol` is `openai`) and speaks Converse: `messages` with `text`, `toolUse` and
`toolResult` blocks, `system`, `inferenceConfig`, `toolConfig`. Streams arrive in AWS's
binary event-stream framing, parsed by botocore's `EventStreamBuffer`.

Usage is read as Bedrock bills it: `inputTokens` are the tokens neither read from nor
written to the prompt cache, `cacheReadInputTokens` and `cacheWriteInputTokens` are priced
apart. An answer without `usage` or `output.message` is a 502 that says so.

    - name: claude-bedrock
      provider: bedrock
      model: anthropic.claude-sonnet-4-5-20250929-v1:0
      options: {region: us-east-1}
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict
from yarl import URL

from thrifty.errors import ConfigError, TranslationError, UpstreamError
from thrifty.protocol.openai import usage_to_openai
from thrifty.providers.base import Provider
from thrifty.providers.transport import connection_error, error_from, reading, session
from thrifty.types import Context, EventStream, Reply, SSEEvent, Usage

__all__ = ["BedrockOptions", "BedrockProvider", "bedrock_usage", "converse_request"]

_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
         "content_filtered": "content_filter", "guardrail_intervened": "content_filter"}


class BedrockOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = "us-east-1"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def bedrock_usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(input_tokens=_int(usage.get("inputTokens")), cache_read_tokens=_int(usage.get("cacheReadInputTokens")),
                 cache_write_tokens=_int(usage.get("cacheWriteInputTokens")), output_tokens=_int(usage.get("outputTokens")))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions request as a Bedrock Converse request."""
    if (body.get("n") or 1) > 1:
        raise TranslationError("n > 1 is not supported by this model")
    for key in ("logprobs", "top_logprobs", "audio", "web_search_options", "response_format"):
        if body.get(key) not in (None, False, 0) and not (key == "response_format" and body[key].get("type") == "text"):
            raise TranslationError(f"'{key}' cannot be sent to this model (Bedrock Converse has no equivalent)")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": role, "content": blocks})

    for i, m in enumerate(body.get("messages") or []):
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append({"text": _text(content)})
        elif role == "user":
            if not isinstance(content, str) and any(p.get("type") != "text" for p in content or []):
                raise TranslationError(f"messages[{i}]: only text can be sent to this model here")
            add("user", [{"text": _text(content)}])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = [{"text": t} for t in [_text(content)] if t]
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = {"arguments": fn.get("arguments")}
                blocks.append({"toolUse": {"toolUseId": call.get("id", ""), "name": fn.get("name", ""), "input": args}})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"toolResult": {"toolUseId": m.get("tool_call_id", ""), "content": [{"text": _text(content)}]}}])
        else:
            raise TranslationError(f"messages[{i}]: role {role!r} cannot be sent to this model")
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        config["maxTokens"] = limit
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            config[dst] = body[src]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    tools = body.get("tools") or []
    if tools:
        if any(t.get("type", "function") != "function" for t in tools):
            raise TranslationError("tools: only function tools can be sent to this model")
        specs = []
        for t in tools:
            fn = t["function"]
            spec: dict[str, Any] = {"name": fn["name"], "inputSchema": {"json": fn.get("parameters") or {"type": "object"}}}
            if fn.get("description"):
                spec["description"] = fn["description"]
            specs.append({"toolSpec": spec})
        tool_config: dict[str, Any] = {"tools": specs}
        choice = body.get("tool_choice")
        if choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            tool_config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name", "")}}
        elif choice == "none":
            raise TranslationError("tool_choice 'none' with tools cannot be sent to this model; leave the tools out")
        out["toolConfig"] = tool_config
    return out


def _bad_shape(name: str, why: str) -> UpstreamError:
    return UpstreamError(502, f"model {name!r} answered in a shape Bedrock Converse does not document: {why}",
                         error_type="api_error")


class BedrockProvider(Provider):
    protocol = "openai"
    Options = BedrockOptions

    def _url(self, stream: bool) -> str:
        options = BedrockOptions.model_validate(self.config.options)
        base = (self.config.base_url or f"https://bedrock-runtime.{options.region}.amazonaws.com").rstrip("/")
        return f"{base}/model/{quote(self.config.upstream_model, safe='')}/{'converse-stream' if stream else 'converse'}"

    def _signed(self, url: str, payload: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        key = self.config.api_key()
        if key:  # a Bedrock API key
            headers["Authorization"] = f"Bearer {key}"
            return headers
        try:
            import botocore.session
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
        except ImportError:
            raise ConfigError("provider bedrock signs requests with botocore: pip install 'thrifty[bedrock]'") from None
        credentials = botocore.session.Session().get_credentials()
        if credentials is None:
            raise UpstreamError(401, f"model {self.name!r}: no AWS credentials found (environment, profile or role)",
                                error_type="authentication_error")
        request = AWSRequest(method="POST", url=url, data=payload, headers=headers)
        SigV4Auth(credentials, "bedrock", BedrockOptions.model_validate(self.config.options).region).add_auth(request)
        return dict(request.headers.items())

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        native = converse_request(body)
        streaming = bool(body.get("stream"))
        url = self._url(streaming)
        payload = orjson.dumps(native)
        headers = self._signed(url, payload)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout, sock_read=self.config.timeout)
        try:
            # sent exactly as signed: the model id's ':' stays %3A on the wire
            resp = await session().post(URL(url, encoded=True), data=payload, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise connection_error(exc, f"{self.name} upstream") from None
        if resp.status >= 400:
            raw = await resp.read()
            resp.release()
            raise error_from(resp.status, resp.headers, raw, self.config.api_key())
        if not streaming:
            try:
                answer = await resp.json(content_type=None)
            except (ValueError, aiohttp.ClientError) as exc:
                raise _bad_shape(self.name, f"not JSON ({exc.__class__.__name__})") from None
            finally:
                resp.release()
            return self._complete(answer)
        stream: EventStream = EventStream(self._relay(resp, lambda: stream))
        return Reply(status=200, stream=stream)

    def _complete(self, answer: Any) -> Reply:
        message = ((answer.get("output") or {}).get("message")) if isinstance(answer, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise _bad_shape(self.name, "no output.message")
        if not isinstance(answer.get("usage"), dict):
            raise _bad_shape(self.name, "no usage, so the call cannot be billed")
        text = "".join(str(b["text"]) for b in message["content"] if isinstance(b, dict) and "text" in b)
        calls = [{"id": b["toolUse"].get("toolUseId", ""), "type": "function",
                  "function": {"name": b["toolUse"].get("name", ""), "arguments": json.dumps(b["toolUse"].get("input") or {})}}
                 for b in message["content"] if isinstance(b, dict) and isinstance(b.get("toolUse"), dict)]
        usage = bedrock_usage(answer["usage"])
        out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
        if calls:
            out["tool_calls"] = calls
        body = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
                "model": self.config.upstream_model,
                "choices": [{"index": 0, "message": out, "logprobs": None,
                             "finish_reason": _STOP.get(answer.get("stopReason") or "end_turn", "stop")}],
                "usage": usage_to_openai(usage)}
        return Reply(status=200, body=body, usage=usage)

    async def _relay(self, resp: aiohttp.ClientResponse, holder: Any) -> AsyncIterator[SSEEvent]:
        from botocore.eventstream import EventStreamBuffer

        stream: EventStream = holder()
        ident, created, model = "chatcmpl-" + uuid.uuid4().hex, int(time.time()), self.config.upstream_model
        tools: dict[int, int] = {}  # Converse content block index -> chat tool-call index
        finish: str | None = None

        def chunk(delta: dict[str, Any] | None, reason: str | None = None, **extra: Any) -> SSEEvent:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]
            return SSEEvent(data={"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                                  "choices": choices, **extra})

        buffer = EventStreamBuffer()
        async with reading(resp, stream, self.name):
            async for data in resp.content.iter_any():
                buffer.add_data(data)
                for message in buffer:
                    kind = message.headers.get(":event-type")
                    if message.headers.get(":message-type") == "exception":
                        stream.error = f"{kind}: {message.payload.decode('utf-8', 'replace')[:500]}"
                        return
                    event = json.loads(message.payload or b"{}")
                    if kind == "messageStart":
                        yield chunk({"role": "assistant", "content": ""})
                    elif kind == "contentBlockStart":
                        use = (event.get("start") or {}).get("toolUse")
                        if isinstance(use, dict):
                            index = tools.setdefault(int(event.get("contentBlockIndex", 0)), len(tools))
                            yield chunk({"tool_calls": [{"index": index, "id": use.get("toolUseId", ""), "type": "function",
                                                         "function": {"name": use.get("name", ""), "arguments": ""}}]})
                    elif kind == "contentBlockDelta":
                        delta = event.get("delta") or {}
                        if "text" in delta:
                            yield chunk({"content": delta["text"]})
                        elif isinstance(delta.get("toolUse"), dict):
                            index = tools.setdefault(int(event.get("contentBlockIndex", 0)), len(tools))
                            yield chunk({"tool_calls": [{"index": index, "function": {
                                "arguments": delta["toolUse"].get("input", "")}}]})
                    elif kind == "messageStop":
                        finish = _STOP.get(event.get("stopReason") or "end_turn", "stop")
                        yield chunk({}, finish)
                    elif kind == "metadata":
                        stream.usage = bedrock_usage(event.get("usage"))
            if finish is None:
                return  # cut short: `reading` records it
            yield chunk(None, usage=usage_to_openai(stream.usage))
            yield SSEEvent(data="[DONE]")
            stream.complete = True
