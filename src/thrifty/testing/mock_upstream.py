"""A local mock of the OpenAI and Anthropic APIs, for tests, demos and benchmarks.

It is the only fake in thrifty's tests: it sits at the provider edge, speaks both wire
protocols over a real socket, and can be told to misbehave. A request's behaviour comes
from its last user message, so a test steers it without configuring the server:

- `[429 once]`   answer 429 (Retry-After: 0) to the first such request, then succeed
- `[500 always]` answer 500 every time
- `[cut]`        stream a few chunks, then drop the connection without finishing
- `[slow N]`     wait N milliseconds before answering
- `[cached N]`   report N cached input tokens (OpenAI) / N cache-read tokens (Anthropic)
- `[write N]`    (Anthropic) report N cache-write tokens (5-minute)
- `[write1h N]`  (Anthropic) report N cache-write tokens (1-hour)
- `[reason N]`   (OpenAI) report N reasoning tokens
- `[tool]`       answer with a tool call to the first tool in the request (the n-th call of a
                 conversation has id `call_mockN` / `toolu_mockN`)

`script` scripts a multi-turn agent run instead: each chat request (either protocol) uses up
the next step, a tool call with given arguments or a text answer.

A conversation that ends with tool results (OpenAI `role: tool` messages, or an Anthropic
user turn of `tool_result` blocks) is answered "result: " + the results' text, never with
another tool call, so multi-turn tool-using conversations can be scripted.

Every answer is deterministic: the text is "echo: " + the last user message, and usage is
counted as one token per 4 characters of input plus 10, output one token per word.

It serves OpenAI's Responses API natively too (`POST /v1/responses`), statelessly as a
`store: false` caller uses it: `[reason N]` adds a reasoning item (with `encrypted_content`
when `include` asks for `reasoning.encrypted_content`) and N reasoning tokens, a
`web_search` tool in the request adds a `web_search_call` item and a cited answer, `[tool]`
calls the first function tool, and a conversation ending in `function_call_output` items is
answered "result: " + their outputs. Like OpenAI, it answers 400 to a reasoning item whose
encrypted content it did not issue and to encrypted reasoning asked of a model that does not
reason (not o-something or gpt-5), and 404 to a `previous_response_id` (it stores nothing).

It also serves both batch APIs (OpenAI Files + Batches, Anthropic Message Batches): a batch
completes `batch_delay` seconds after it was created, when it is first looked at; with
`batch_expire` set only the first half of its lines are answered and the batch expires; a
line whose text holds `[drop]` gets no result (a partial result). Each answered line is
billed once, when the batch completes, at `batch_prices` (USD per 1M tokens, per upstream
model) times `batch_discount`, into `batch_billed`; fetching results again bills nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import time
import zlib
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

_DIRECTIVE = re.compile(r"\[(429 once|500 always|cut|tool|drop|slow \d+|cached \d+|write1h \d+|write \d+|reason \d+)\]")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


def _tool_results(messages: list[dict[str, Any]]) -> str | None:
    """The text of the tool results the conversation ends with (None when it does not)."""
    texts: list[str] = []
    for m in reversed(messages):
        content = m.get("content")
        if m.get("role") == "tool":
            texts.append(content if isinstance(content, str) else json.dumps(content))
            continue
        if m.get("role") == "user" and isinstance(content, list) and not texts:
            blocks = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            for b in blocks:
                inner = b.get("content")
                texts.append(inner if isinstance(inner, str) else
                             " ".join(str(p.get("text", "")) for p in inner or [] if isinstance(p, dict)))
            return "; ".join(texts) if blocks else None
        break
    return "; ".join(reversed(texts)) if texts else None


def _calls_so_far(messages: list[dict[str, Any]]) -> int:
    """How many tool calls the assistant has made in the conversation."""
    n = 0
    for m in messages:
        if m.get("role") != "assistant":
            continue
        n += len(m.get("tool_calls") or [])
        content = m.get("content")
        if isinstance(content, list):
            n += sum(1 for b in content if isinstance(b, dict) and b.get("type") == "tool_use")
    return n


def _directives(text: str) -> dict[str, int | bool]:
    out: dict[str, int | bool] = {}
    for d in _DIRECTIVE.findall(text):
        name, _, num = d.partition(" ")
        if name in ("429", "500"):
            out[name] = True
        elif num:
            out[name] = int(num)
        else:
            out[name] = True
    return out


class MockUpstream:
    """Both APIs on one aiohttp app. `calls` counts requests per path; `bodies` keeps them."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.raw_bodies: list[bytes] = []  # Bedrock's, as sent (their signature covers the bytes)
        #: Scripted answers, used up one per chat request (either protocol) before any
        #: directive: {"tool": name, "arguments": {...}} calls a tool, {"text": ...} answers.
        self.script: list[dict[str, Any]] = []
        self._failed_once: set[str] = set()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.openai)
        self.app.router.add_post("/v1/messages", self.anthropic)
        self.app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        self.app.router.add_post("/v1/embeddings", self.embeddings)
        self.app.router.add_post("/v1/completions", self.completions)
        self.app.router.add_post("/v1/responses", self.responses)
        #: encrypted reasoning the Responses endpoint issued, by reasoning item id
        self.issued_reasoning: dict[str, str] = {}
        # Azure OpenAI: the same API under deployment URLs (api-version in the query)
        self.app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.openai)
        self.app.router.add_post("/openai/deployments/{deployment}/embeddings", self.embeddings)
        self.app.router.add_post("/openai/v1/chat/completions", self.openai)
        # Google Gemini: /v1beta/models/<model>:generateContent or :streamGenerateContent?alt=sse
        self.app.router.add_post("/v1beta/models/{target}", self.gemini)
        # AWS Bedrock Converse (JSON) and ConverseStream (AWS event-stream framing)
        self.app.router.add_post("/model/{model}/converse", self.bedrock)
        self.app.router.add_post("/model/{model}/converse-stream", self.bedrock)
        self.batch_delay = 0.5
        self.batch_expire = False
        self.batch_discount = Decimal("0.5")
        #: USD per 1M tokens by upstream model: {"input": .., "output": .., "cache_read": ..}.
        self.batch_prices: dict[str, dict[str, Decimal]] = {}
        self.batch_billed = Decimal(0)
        self.files: dict[str, tuple[str, bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        r = self.app.router
        r.add_post("/v1/files", self.file_upload)
        r.add_get("/v1/files/{id}/content", self.file_content)
        r.add_post("/v1/batches", self.openai_batch_create)
        r.add_get("/v1/batches", self.openai_batch_list)
        r.add_get("/v1/batches/{id}", self.openai_batch_get)
        r.add_post("/v1/batches/{id}/cancel", self.batch_cancel)
        r.add_post("/v1/messages/batches", self.anthropic_batch_create)
        r.add_get("/v1/messages/batches", self.anthropic_batch_list)
        r.add_get("/v1/messages/batches/{id}", self.anthropic_batch_get)
        r.add_get("/v1/messages/batches/{id}/results", self.anthropic_batch_results)
        r.add_post("/v1/messages/batches/{id}/cancel", self.batch_cancel)
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> MockUpstream:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _prelude(self, request: web.Request, kind: str) -> tuple[dict[str, Any], str, dict[str, int | bool]] | web.Response:
        self.calls[kind] += 1
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.urls.append(request.raw_path)
        text = _last_user_text(body.get("messages") or [])
        d = _directives(text)
        if "slow" in d:
            await asyncio.sleep(int(d["slow"]) / 1000)
        if d.get("429") and text not in self._failed_once:
            self._failed_once.add(text)
            err = _error(kind, 429, "rate limited, try again")
            return web.json_response(err, status=429, headers={"Retry-After": "0"})
        if d.get("500"):
            return web.json_response(_error(kind, 500, "the mock upstream is broken on purpose"), status=500)
        return body, text, d

    async def openai(self, request: web.Request) -> web.StreamResponse:
        pre = await self._prelude(request, "openai")
        if isinstance(pre, web.Response):
            return pre
        body, text, d = pre
        answer = "echo: " + re.sub(_DIRECTIVE, "", text).strip()
        results = _tool_results(body["messages"])
        if results is not None:
            answer, d = "result: " + results, {k: v for k, v in d.items() if k != "tool"}
        step = self.script.pop(0) if self.script else None
        if step is not None and "text" in step:
            answer = step["text"]
        prompt_tokens = sum(len(json.dumps(m.get("content"))) for m in body["messages"]) // 4 + 10
        words = answer.split()
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words) + int(d.get("reason", 0)),
            "total_tokens": prompt_tokens + len(words) + int(d.get("reason", 0)),
            "prompt_tokens_details": {"cached_tokens": int(d.get("cached", 0))},
            "completion_tokens_details": {"reasoning_tokens": int(d.get("reason", 0))},
        }
        tool_call: dict[str, Any] | None = None
        call_id = f"call_mock{_calls_so_far(body['messages']) + 1}"
        if step is not None and "tool" in step:
            tool_call = {"id": call_id, "type": "function",
                         "function": {"name": step["tool"], "arguments": json.dumps(step.get("arguments", {}))}}
        elif step is None and d.get("tool") and body.get("tools"):
            fn = body["tools"][0]["function"]["name"]
            tool_call = {"id": call_id, "type": "function", "function": {"name": fn, "arguments": '{"q": "x"}'}}
        model = body.get("model", "mock")
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else answer}
            if tool_call:
                message["tool_calls"] = [tool_call]
            return web.json_response({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_call else "stop",
                             "logprobs": None}],
                "usage": usage,
            })
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        await resp.write(chunk({"role": "assistant", "content": ""}))
        if tool_call:
            head = {**tool_call, "function": {**tool_call["function"], "arguments": ""}}
            await resp.write(chunk({"tool_calls": [{"index": 0, **head}]}))
            await resp.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": tool_call["function"]["arguments"]}}]}))
        else:
            for i, w in enumerate(words):
                await resp.write(chunk({"content": (" " if i else "") + w}))
                if d.get("cut") and i >= 1:
                    await asyncio.sleep(0.01)
                    assert request.transport is not None
                    request.transport.close()
                    return resp
        await resp.write(chunk({}, "tool_calls" if tool_call else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            data = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                    "choices": [], "usage": usage}
            await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        """OpenAI embeddings: each input's vector is derived from its SHA-256 (`dimensions`
        numbers, default 8), and it is billed one token per 4 characters, at least 1.
        An input containing `[badshape]` gets an answer with one vector too few."""
        self.calls["embeddings"] += 1
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        inputs = body["input"] if isinstance(body["input"], list) and not isinstance(body["input"][0], int) else [body["input"]]
        dims = int(body.get("dimensions") or 8)
        data = [{"object": "embedding", "index": i, "embedding": mock_vector(item, dims)} for i, item in enumerate(inputs)]
        if any("[badshape]" in str(item) for item in inputs):
            data = data[:-1]
        tokens = sum(max(len(json.dumps(item)) // 4, 1) for item in inputs)
        return web.json_response({"object": "list", "data": data, "model": body.get("model", "mock"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """Legacy text completions: the text is " echo: " + the prompt (directives work)."""
        self.calls["completions"] += 1
        body = await request.json()
        self.bodies.append(body)
        prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else json.dumps(body.get("prompt"))
        d = _directives(prompt)
        if "slow" in d:
            await asyncio.sleep(int(d["slow"]) / 1000)
        if d.get("500"):
            return web.json_response(_error("openai", 500, "the mock upstream is broken on purpose"), status=500)
        words = ("echo: " + re.sub(_DIRECTIVE, "", prompt).strip()).split()
        prompt_tokens = len(prompt) // 4 + 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        base = {"id": "cmpl-mock", "object": "text_completion", "created": 1700000000, "model": body.get("model", "mock")}
        if not body.get("stream"):
            return web.json_response({**base, "choices": [{"index": 0, "text": " " + " ".join(words),
                                                           "logprobs": None, "finish_reason": "stop"}], "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, w in enumerate(words):
            choice = {"index": 0, "text": " " + w, "logprobs": None, "finish_reason": "stop" if i == len(words) - 1 else None}
            await resp.write(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
            if d.get("cut") and i >= 1:
                await asyncio.sleep(0.01)
                assert request.transport is not None
                request.transport.close()
                return resp
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses API, stateless (see the module docstring)."""
        self.calls["responses"] += 1
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.urls.append(request.raw_path)
        if body.get("previous_response_id"):
            return web.json_response(_error("openai", 404, f"Previous response with id "
                                            f"'{body['previous_response_id']}' not found."), status=404)
        include = body.get("include") or []
        if "reasoning.encrypted_content" in include and not re.match(r"o\d|gpt-5", str(body.get("model"))):
            return web.json_response(_error("openai", 400, "Encrypted content is not supported with this model."),
                                     status=400)
        items = body["input"] if isinstance(body.get("input"), list) else [{"role": "user", "content": body.get("input")}]
        for item in items:
            if item.get("type") == "reasoning" and (
                    self.issued_reasoning.get(item.get("id", "")) != item.get("encrypted_content")):
                return web.json_response(_error("openai", 400, f"Item with id '{item.get('id')}' not found. "
                                                "Items are not persisted when `store` is set to false."), status=400)
        text = ""
        for item in reversed(items):
            if item.get("role") == "user" and item.get("type", "message") == "message":
                content = item.get("content")
                text = content if isinstance(content, str) else " ".join(
                    str(p.get("text", "")) for p in content or [] if isinstance(p, dict))
                break
        d = _directives(text)
        if "slow" in d:
            await asyncio.sleep(int(d["slow"]) / 1000)
        if d.get("500"):
            return web.json_response(_error("openai", 500, "the mock upstream is broken on purpose"), status=500)
        outputs: list[str] = []
        for item in reversed(items):
            if item.get("type") != "function_call_output":
                break
            outputs.insert(0, str(item.get("output")))
        answer = "result: " + "; ".join(outputs) if outputs else "echo: " + re.sub(_DIRECTIVE, "", text).strip()
        turn = next(self._ids)  # unique ids across every conversation
        output: list[dict[str, Any]] = []
        reason = 0 if outputs else int(d.get("reason", 0))
        if reason:
            rs: dict[str, Any] = {"type": "reasoning", "id": f"rs_mock{turn}", "summary": []}
            if "reasoning.encrypted_content" in (body.get("include") or []):
                rs["encrypted_content"] = f"gAAAA-mock-{turn}-" + hashlib.sha256(text.encode()).hexdigest()[:16]
                self.issued_reasoning[rs["id"]] = rs["encrypted_content"]
            output.append(rs)
        tools = body.get("tools") or []
        searched = any(isinstance(t, dict) and str(t.get("type", "")).startswith("web_search") for t in tools)
        annotations: list[dict[str, Any]] = []
        if searched and not outputs:
            output.append({"type": "web_search_call", "id": f"ws_mock{turn}", "status": "completed",
                           "action": {"type": "search", "query": text}})
            annotations = [{"type": "url_citation", "start_index": 0, "end_index": len(answer),
                            "url": "https://example.com/mock", "title": "Mock source"}]
        functions = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
        calls = sum(1 for i in items if i.get("type") == "function_call")
        step = self.script.pop(0) if self.script else None
        if step is not None and "text" in step:
            answer = step["text"]
        if step is not None and "tool" in step:
            output.append({"type": "function_call", "id": f"fc_mock{calls + 1}", "call_id": f"call_mock{calls + 1}",
                           "name": step["tool"], "arguments": json.dumps(step.get("arguments", {})),
                           "status": "completed"})
        elif step is None and d.get("tool") and functions and not outputs:
            output.append({"type": "function_call", "id": f"fc_mock{calls + 1}", "call_id": f"call_mock{calls + 1}",
                           "name": functions[0]["name"], "arguments": '{"q": "x"}', "status": "completed"})
        else:
            output.append({"type": "message", "id": f"msg_mock{turn}", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": answer, "annotations": annotations,
                                        "logprobs": []}]})
        words = answer.split()
        input_tokens = len(json.dumps(items)) // 4 + 10
        cached = min(int(d.get("cached", 0)), input_tokens)
        out_tokens = (1 if output[-1]["type"] == "function_call" else len(words)) + reason
        usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": reason},
                 "total_tokens": input_tokens + out_tokens}
        response = {"id": f"resp_mock{turn}", "object": "response", "created_at": 1700000000, "status": "completed",
                    "error": None, "incomplete_details": None, "model": body.get("model", "mock"), "output": output,
                    "usage": usage, "store": body.get("store", True), "tools": tools,
                    "instructions": body.get("instructions"), "reasoning": body.get("reasoning") or {},
                    "text": body.get("text") or {"format": {"type": "text"}}}
        if not body.get("stream"):
            return web.json_response(response)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        seq = itertools.count()

        async def send(kind: str, **fields: Any) -> None:
            data = {"type": kind, "sequence_number": next(seq), **fields}
            await resp.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

        opening = {**response, "status": "in_progress", "output": [], "usage": None}
        await send("response.created", response=opening)
        await send("response.in_progress", response=opening)
        for index, item in enumerate(output):
            if item["type"] != "message":
                await send("response.output_item.added", output_index=index, item=item)
                await send("response.output_item.done", output_index=index, item=item)
                continue
            await send("response.output_item.added", output_index=index, item={**item, "content": [],
                                                                               "status": "in_progress"})
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            await send("response.content_part.added", **common,
                       part={"type": "output_text", "text": "", "annotations": []})
            for i, w in enumerate(words):
                await send("response.output_text.delta", **common, delta=(" " if i else "") + w, logprobs=[])
                if d.get("cut") and i >= 1:
                    await asyncio.sleep(0.01)
                    assert request.transport is not None
                    request.transport.close()
                    return resp
            await send("response.output_text.done", **common, text=answer, logprobs=[])
            await send("response.content_part.done", **common, part=item["content"][0])
            await send("response.output_item.done", output_index=index, item=item)
        await send("response.completed", response=response)
        await resp.write_eof()
        return resp

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        """Gemini's native API. Usage follows its documented shape: `promptTokenCount`
        includes `cachedContentTokenCount` ([cached N]); `thoughtsTokenCount` ([reason N]) is
        apart from `candidatesTokenCount`. `[badshape]` leaves `usageMetadata` out."""
        model, _, action = request.match_info["target"].partition(":")
        self.calls["gemini"] += 1
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.urls.append(request.raw_path)
        contents = body.get("contents") or []
        text = ""
        for c in reversed(contents):
            texts = [str(p["text"]) for p in c.get("parts") or [] if "text" in p]
            if c.get("role") == "user" and texts:
                text = " ".join(texts)
                break
        last = contents[-1].get("parts") or [] if contents else []
        results = [p["functionResponse"].get("response") for p in last if "functionResponse" in p]
        d = _directives(text)
        answer = "echo: " + re.sub(_DIRECTIVE, "", text).strip()
        if results:
            answer = "result: " + "; ".join(str(r.get("result", r)) if isinstance(r, dict) else str(r) for r in results)
        step = self.script.pop(0) if self.script else None
        call: dict[str, Any] | None = None
        if step is not None and "tool" in step:
            call = {"name": step["tool"], "args": step.get("arguments", {})}
        elif step is not None:
            answer = step["text"]
        elif d.get("tool") and not results and body.get("tools"):
            call = {"name": body["tools"][0]["functionDeclarations"][0]["name"], "args": {"q": "x"}}
        words = answer.split()
        prompt = len(json.dumps(contents)) // 4 + 10
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": 1 if call else len(words),
                 "cachedContentTokenCount": int(d.get("cached", 0)), "thoughtsTokenCount": int(d.get("reason", 0))}
        usage["totalTokenCount"] = prompt + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
        usage = {k: v for k, v in usage.items() if v or k == "promptTokenCount"}
        final: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": call}] if call
                                                             else [{"text": answer}]}, "finishReason": "STOP"}],
                                 "modelVersion": model, "responseId": "gemini-mock"}
        if "[badshape]" not in text:
            final["usageMetadata"] = usage
        if action == "generateContent":
            return web.json_response(final)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if not call:
            for i, w in enumerate(words[:-1]):
                piece = {"candidates": [{"content": {"role": "model", "parts": [{"text": (" " if i else "") + w}]}}],
                         "usageMetadata": {"promptTokenCount": prompt}, "modelVersion": model}
                await resp.write(b"data: " + json.dumps(piece).encode() + b"\r\n\r\n")
                if d.get("cut") and i >= 1:
                    await asyncio.sleep(0.01)
                    assert request.transport is not None
                    request.transport.close()
                    return resp
            final["candidates"][0]["content"]["parts"] = [{"text": (" " if len(words) > 1 else "") + words[-1]}]
        await resp.write(b"data: " + json.dumps(final).encode() + b"\r\n\r\n")
        await resp.write_eof()
        return resp

    async def bedrock(self, request: web.Request) -> web.StreamResponse:
        """Bedrock Converse. Usage follows its documented shape: `inputTokens` leaves out
        `cacheReadInputTokens` ([cached N]) and `cacheWriteInputTokens` ([write N]).
        `[badshape]` leaves `usage` out."""
        self.calls["bedrock"] += 1
        self.raw_bodies.append(await request.read())
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.urls.append(request.raw_path)
        messages = body.get("messages") or []
        text = ""
        for m in reversed(messages):
            texts = [str(b["text"]) for b in m.get("content") or [] if "text" in b]
            if m.get("role") == "user" and texts:
                text = " ".join(texts)
                break
        last = messages[-1].get("content") or [] if messages else []
        results = [" ".join(str(c.get("text", "")) for c in b["toolResult"].get("content") or [])
                   for b in last if "toolResult" in b]
        d = _directives(text)
        answer = "result: " + "; ".join(results) if results else "echo: " + re.sub(_DIRECTIVE, "", text).strip()
        step = self.script.pop(0) if self.script else None
        use: dict[str, Any] | None = None
        call_id = f"tooluse_mock{_calls_so_far([{'role': m['role'], 'tool_calls': [b for b in m.get('content') or [] if 'toolUse' in b]} for m in messages]) + 1}"
        if step is not None and "tool" in step:
            use = {"toolUseId": call_id, "name": step["tool"], "input": step.get("arguments", {})}
        elif step is not None:
            answer = step["text"]
        elif d.get("tool") and not results and body.get("toolConfig"):
            use = {"toolUseId": call_id, "name": body["toolConfig"]["tools"][0]["toolSpec"]["name"], "input": {"q": "x"}}
        words = answer.split()
        base = len(json.dumps(messages)) // 4 + 10
        usage = {"inputTokens": base, "outputTokens": 1 if use else len(words),
                 "cacheReadInputTokens": int(d.get("cached", 0)), "cacheWriteInputTokens": int(d.get("write", 0))}
        usage["totalTokens"] = sum(usage.values())
        stop = "tool_use" if use else "end_turn"
        if request.path.endswith("/converse"):
            answer_body: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": [
                {"toolUse": use} if use else {"text": answer}]}}, "stopReason": stop, "metrics": {"latencyMs": 5}}
            if "[badshape]" not in text:
                answer_body["usage"] = usage
            return web.json_response(answer_body)
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        await resp.write(_aws_event("messageStart", {"role": "assistant"}))
        if use:
            await resp.write(_aws_event("contentBlockStart", {"contentBlockIndex": 0, "start": {
                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            await resp.write(_aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {
                "toolUse": {"input": json.dumps(use["input"])}}}))
        else:
            for i, w in enumerate(words):
                await resp.write(_aws_event("contentBlockDelta", {"contentBlockIndex": 0,
                                                                  "delta": {"text": (" " if i else "") + w}}))
                if d.get("cut") and i >= 1:
                    await asyncio.sleep(0.01)
                    assert request.transport is not None
                    request.transport.close()
                    return resp
        await resp.write(_aws_event("contentBlockStop", {"contentBlockIndex": 0}))
        await resp.write(_aws_event("messageStop", {"stopReason": stop}))
        await resp.write(_aws_event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}}))
        await resp.write_eof()
        return resp

    # -- the batch APIs ------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    async def file_upload(self, request: web.Request) -> web.Response:
        self.calls["files"] += 1
        form = await request.post()
        upload = form.get("file")
        data = upload.file.read() if isinstance(upload, web.FileField) else str(upload or "").encode()
        name = upload.filename if isinstance(upload, web.FileField) else "upload.jsonl"
        file_id = self._new_id("file-mock")
        self.files[file_id] = (str(name), data)
        return web.json_response({"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                  "filename": name, "purpose": str(form.get("purpose", "batch"))})

    async def file_content(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return web.json_response(_error("openai", 404, "no such file"), status=404)
        return web.Response(body=found[1], content_type="application/jsonl")

    def _answer(self, kind: str, body: dict[str, Any]) -> tuple[dict[str, Any], Decimal] | None:
        """The answer to one batch line and what it bills (None: the line is dropped)."""
        text = _last_user_text(body.get("messages") or [])
        d = _directives(text)
        if d.get("drop"):
            return None
        prices = self.batch_prices.get(str(body.get("model")), {})
        rate = {k: Decimal(str(v)) / Decimal(1_000_000) for k, v in prices.items()}
        if kind == "openai":
            answer = _openai_completion(body, text, d)
            u = answer["usage"]
            cached = int(u["prompt_tokens_details"]["cached_tokens"])
            cost = ((u["prompt_tokens"] - cached) * rate.get("input", Decimal(0))
                    + cached * rate.get("cache_read", rate.get("input", Decimal(0)))
                    + u["completion_tokens"] * rate.get("output", Decimal(0)))
        else:
            answer = _anthropic_message(body, text, d)
            u = answer["usage"]
            cost = (u["input_tokens"] * rate.get("input", Decimal(0))
                    + u["cache_read_input_tokens"] * rate.get("cache_read", rate.get("input", Decimal(0)))
                    + u["output_tokens"] * rate.get("output", Decimal(0)))
        return answer, cost * self.batch_discount

    def _settle(self, batch: dict[str, Any]) -> None:
        """Complete the batch once its delay passed: answer its lines, bill them, once."""
        if batch["ended"] or time.time() < batch["created_at"] + self.batch_delay:
            return
        batch["ended"] = True
        batch["ended_at"] = time.time()
        lines = batch["lines"]
        cutoff = len(lines) // 2 if self.batch_expire else len(lines)
        for i, (custom_id, body) in enumerate(lines):
            if batch["cancelled"] or i >= cutoff:
                batch["results"][custom_id] = None
                continue
            self.calls["batch_lines"] += 1
            got = self._answer(batch["kind"], body)
            if got is None:
                continue
            answer, cost = got
            self.batch_billed += cost
            batch["results"][custom_id] = answer
        batch["status"] = "cancelled" if batch["cancelled"] else ("expired" if self.batch_expire else "completed")
        if batch["kind"] == "openai":
            out = [{"id": f"batch_req_{i}", "custom_id": cid, "response": {"status_code": 200, "request_id": "req_mock",
                                                                          "body": ans}, "error": None}
                   for i, (cid, ans) in enumerate(batch["results"].items()) if ans is not None]
            err = [{"id": f"batch_req_{i}", "custom_id": cid, "response": None,
                    "error": {"code": "batch_expired", "message": "not answered in time"}}
                   for i, (cid, ans) in enumerate(batch["results"].items()) if ans is None]
            for key, rows in (("output_file_id", out), ("error_file_id", err)):
                if rows:
                    fid = self._new_id("file-mock")
                    self.files[fid] = (f"{batch['id']}_{key}.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
                    batch[key] = fid

    def _openai_view(self, b: dict[str, Any]) -> dict[str, Any]:
        self._settle(b)
        n = len(b["lines"])
        done = sum(1 for v in b["results"].values() if v is not None)
        return {"id": b["id"], "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": b["input_file_id"], "completion_window": "24h",
                "status": b["status"] if b["ended"] else "in_progress",
                "output_file_id": b.get("output_file_id"), "error_file_id": b.get("error_file_id"),
                "created_at": int(b["created_at"]), "metadata": b["metadata"],
                "request_counts": {"total": n, "completed": done, "failed": (n - done) if b["ended"] else 0}}

    async def openai_batch_create(self, request: web.Request) -> web.Response:
        self.calls["batch_create"] += 1
        req = await request.json()
        found = self.files.get(str(req.get("input_file_id", "")))
        if found is None:
            return web.json_response(_error("openai", 400, "no such input file"), status=400)
        lines = [(item["custom_id"], item["body"]) for item in map(json.loads, found[1].decode().splitlines()) if item]
        b: dict[str, Any] = {"id": self._new_id("batch_mock"), "kind": "openai", "created_at": time.time(), "lines": lines,
             "results": {}, "ended": False, "cancelled": False, "status": "in_progress",
             "metadata": req.get("metadata") or {}, "input_file_id": req["input_file_id"]}
        self.batches[b["id"]] = b
        return web.json_response(self._openai_view(b))

    async def openai_batch_get(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None or b["kind"] != "openai":
            return web.json_response(_error("openai", 404, "no such batch"), status=404)
        return web.json_response(self._openai_view(b))

    async def openai_batch_list(self, request: web.Request) -> web.Response:
        data = [self._openai_view(b) for b in reversed(self.batches.values()) if b["kind"] == "openai"]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def batch_cancel(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return web.json_response(_error("openai", 404, "no such batch"), status=404)
        if not b["ended"]:
            b["cancelled"] = True
            b["created_at"] = time.time() - self.batch_delay  # a cancelled batch ends at once
            self._settle(b)
        return web.json_response(self._openai_view(b) if b["kind"] == "openai" else self._anthropic_view(b))

    def _anthropic_view(self, b: dict[str, Any]) -> dict[str, Any]:
        self._settle(b)
        results = b["results"]
        ok = sum(1 for v in results.values() if v is not None)
        return {"id": b["id"], "type": "message_batch", "processing_status": "ended" if b["ended"] else "in_progress",
                "request_counts": {"processing": 0 if b["ended"] else len(b["lines"]), "succeeded": ok,
                                   "errored": 0, "canceled": len(results) - ok if b["cancelled"] else 0,
                                   "expired": len(results) - ok if not b["cancelled"] else 0},
                "created_at": _iso(b["created_at"]), "ended_at": _iso(b["ended_at"]) if b["ended"] else None,
                "expires_at": _iso(b["created_at"] + 86400), "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.base_url}/v1/messages/batches/{b['id']}/results" if b["ended"] else None}

    async def anthropic_batch_create(self, request: web.Request) -> web.Response:
        self.calls["batch_create"] += 1
        req = await request.json()
        lines = [(item["custom_id"], item["params"]) for item in req["requests"]]
        b: dict[str, Any] = {"id": self._new_id("msgbatch_mock"), "kind": "anthropic", "created_at": time.time(), "lines": lines,
             "results": {}, "ended": False, "cancelled": False, "status": "in_progress"}
        self.batches[b["id"]] = b
        return web.json_response(self._anthropic_view(b))

    async def anthropic_batch_get(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None or b["kind"] != "anthropic":
            return web.json_response(_error("anthropic", 404, "no such batch"), status=404)
        return web.json_response(self._anthropic_view(b))

    async def anthropic_batch_list(self, request: web.Request) -> web.Response:
        data = [self._anthropic_view(b) for b in reversed(self.batches.values()) if b["kind"] == "anthropic"]
        return web.json_response({"data": data, "has_more": False, "first_id": None, "last_id": None})

    async def anthropic_batch_results(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None or not b["ended"]:
            return web.json_response(_error("anthropic", 404, "no results yet"), status=404)
        rows = []
        for cid, ans in b["results"].items():
            if ans is not None:
                rows.append({"custom_id": cid, "result": {"type": "succeeded", "message": ans}})
            else:
                rows.append({"custom_id": cid, "result": {"type": "canceled" if b["cancelled"] else "expired"}})
        return web.Response(body="".join(json.dumps(r) + "\n" for r in rows).encode(), content_type="application/x-jsonl")

    async def count_tokens(self, request: web.Request) -> web.Response:
        self.calls["count_tokens"] += 1
        body = await request.json()
        return web.json_response({"input_tokens": len(json.dumps(body.get("messages"))) // 4 + 10})

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        pre = await self._prelude(request, "anthropic")
        if isinstance(pre, web.Response):
            return pre
        body, text, d = pre
        answer = "echo: " + re.sub(_DIRECTIVE, "", text).strip()
        results = _tool_results(body["messages"])
        if results is not None:
            answer, d = "result: " + results, {k: v for k, v in d.items() if k != "tool"}
        words = answer.split()
        system = body.get("system") or ""
        prompt_tokens = (sum(len(json.dumps(m.get("content"))) for m in body["messages"]) + len(json.dumps(system))) // 4 + 10
        usage = {
            "input_tokens": prompt_tokens,
            "cache_creation_input_tokens": int(d.get("write", 0)) + int(d.get("write1h", 0)),
            "cache_creation": {"ephemeral_5m_input_tokens": int(d.get("write", 0)),
                               "ephemeral_1h_input_tokens": int(d.get("write1h", 0))},
            "cache_read_input_tokens": int(d.get("cached", 0)),
            "output_tokens": len(words),
        }
        model = body.get("model", "mock")
        tool = body.get("tools", [None])[0] if d.get("tool") else None
        arguments: dict[str, Any] = {"q": "x"}
        step = self.script.pop(0) if self.script else None
        if step is not None and "tool" in step:
            tool, arguments = {"name": step["tool"]}, step.get("arguments", {})
        elif step is not None:
            tool, answer, words = None, step["text"], step["text"].split()
        content: list[dict[str, Any]] = (
            [{"type": "tool_use", "id": f"toolu_mock{_calls_so_far(body['messages']) + 1}", "name": tool["name"],
              "input": arguments}] if tool
            else [{"type": "text", "text": answer}]
        )
        stop = "tool_use" if tool else "end_turn"
        if not body.get("stream"):
            return web.json_response({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None, "usage": usage,
            })
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(kind: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())

        start_usage = {**usage, "output_tokens": 1}
        await send("message_start", {"message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                                                 "content": [], "stop_reason": None, "stop_sequence": None,
                                                 "usage": start_usage}})
        if tool:
            await send("content_block_start", {"index": 0, "content_block": {**content[0], "input": {}}})
            await send("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                                     "partial_json": json.dumps(arguments)}})
        else:
            await send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            await send("ping", {})
            for i, w in enumerate(words):
                await send("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": (" " if i else "") + w}})
                if d.get("cut") and i >= 1:
                    await asyncio.sleep(0.01)
                    assert request.transport is not None
                    request.transport.close()
                    return resp
        await send("content_block_stop", {"index": 0})
        await send("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": len(words)}})
        await send("message_stop", {})
        await resp.write_eof()
        return resp


def _aws_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of AWS's binary event-stream framing (prelude, string headers, payload, CRCs)."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")):
        n, v = name.encode(), value.encode()
        headers += bytes([len(n)]) + n + bytes([7]) + len(v).to_bytes(2, "big") + v
    body = json.dumps(payload).encode()
    prelude = (12 + len(headers) + len(body) + 4).to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + headers + body
    return message + zlib.crc32(message).to_bytes(4, "big")


def mock_vector(item: Any, dims: int = 8) -> list[float]:
    """The mock's embedding of `item`: `dims` numbers in [-1, 1) from its SHA-256."""
    seed = hashlib.sha256(json.dumps(item).encode()).digest()
    while len(seed) < dims:
        seed += hashlib.sha256(seed).digest()
    return [(b - 128) / 128 for b in seed[:dims]]


def _openai_parts(body: dict[str, Any], text: str, d: dict[str, int | bool]) -> tuple[str, list[str], dict[str, Any], dict[str, Any] | None]:
    answer = "echo: " + re.sub(_DIRECTIVE, "", text).strip()
    prompt_tokens = sum(len(json.dumps(m.get("content"))) for m in body["messages"]) // 4 + 10
    words = answer.split()
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(words) + int(d.get("reason", 0)),
        "total_tokens": prompt_tokens + len(words) + int(d.get("reason", 0)),
        "prompt_tokens_details": {"cached_tokens": int(d.get("cached", 0))},
        "completion_tokens_details": {"reasoning_tokens": int(d.get("reason", 0))},
    }
    tool_call = None
    if d.get("tool") and body.get("tools"):
        fn = body["tools"][0]["function"]["name"]
        tool_call = {"id": "call_mock1", "type": "function", "function": {"name": fn, "arguments": '{"q": "x"}'}}
    return answer, words, usage, tool_call


def _openai_completion(body: dict[str, Any], text: str, d: dict[str, int | bool]) -> dict[str, Any]:
    answer, _words, usage, tool_call = _openai_parts(body, text, d)
    message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else answer}
    if tool_call:
        message["tool_calls"] = [tool_call]
    return {
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000, "model": body.get("model", "mock"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_call else "stop",
                     "logprobs": None}],
        "usage": usage,
    }


def _anthropic_message(body: dict[str, Any], text: str, d: dict[str, int | bool]) -> dict[str, Any]:
    answer = "echo: " + re.sub(_DIRECTIVE, "", text).strip()
    words = answer.split()
    system = body.get("system") or ""
    prompt_tokens = (sum(len(json.dumps(m.get("content"))) for m in body["messages"]) + len(json.dumps(system))) // 4 + 10
    usage = {
        "input_tokens": prompt_tokens,
        "cache_creation_input_tokens": int(d.get("write", 0)) + int(d.get("write1h", 0)),
        "cache_creation": {"ephemeral_5m_input_tokens": int(d.get("write", 0)),
                           "ephemeral_1h_input_tokens": int(d.get("write1h", 0))},
        "cache_read_input_tokens": int(d.get("cached", 0)),
        "output_tokens": len(words),
    }
    tool = body.get("tools", [None])[0] if d.get("tool") else None
    content: list[dict[str, Any]] = (
        [{"type": "tool_use", "id": "toolu_mock1", "name": tool["name"], "input": {"q": "x"}}] if tool
        else [{"type": "text", "text": answer}]
    )
    return {
        "id": "msg_mock", "type": "message", "role": "assistant", "model": body.get("model", "mock"), "content": content,
        "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None, "usage": usage,
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _error(kind: str, status: int, message: str) -> dict[str, Any]:
    if kind == "anthropic":
        etype = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": etype, "message": message}}
    return {"error": {"message": message, "type": "rate_limit_error" if status == 429 else "server_error",
                      "param": None, "code": None}}


def main() -> None:  # pragma: no cover - a manual tool
    import argparse

    parser = argparse.ArgumentParser(description="Run the mock OpenAI/Anthropic upstream.")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()

    async def run() -> None:
        mock = await MockUpstream().start(args.port)
        print(f"mock upstream on {mock.base_url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":  # pragma: no cover
    main()
