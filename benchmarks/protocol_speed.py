"""How much the protocol layer adds per request: collect, replay, translate, token estimates.

The gateway's overhead budget is about a millisecond a request, so each operation here is
timed on a typical answer (about 300 words of text and two tool calls) and printed in
microseconds per call. The Responses API's added latency (its request translated to chat
completions, the chat answer or stream translated back; target <= 0.5 ms median) is timed
call by call and its median printed, with the store write that a stored response adds
next to it, and so is thrifty's own work on a request passed through to a model that serves
the Responses API itself (the chat form for the levers, the upstream body, each relayed
event). Run: `PYTHONPATH=src python benchmarks/protocol_speed.py`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from thrifty.ledger.tokens import count_text, estimate_request_tokens, warm
from thrifty.protocol.anthropic import collect_anthropic, replay_anthropic
from thrifty.protocol.openai import collect_openai, replay_openai
from thrifty.protocol.responses import chat_request, input_items, output_items, response_object
from thrifty.protocol.responses_stream import ChatToResponsesStream
from thrifty.protocol.translate import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)

TEXT = " ".join(f"word{i % 97}" for i in range(300)) + "."
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1731000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": TEXT,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "paris weather"}'},
                    }
                    for i in range(2)
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 900,
        "completion_tokens": 420,
        "total_tokens": 1320,
        "prompt_tokens_details": {"cached_tokens": 512},
    },
}
REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a careful assistant. " * 20},
        {"role": "user", "content": TEXT},
        {
            "role": "assistant",
            "content": "Sure, let me check.",
            "tool_calls": COMPLETION["choices"][0]["message"]["tool_calls"],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "18 C"},
        {"role": "tool", "tool_call_id": "call_1", "content": "19 C"},
    ],
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    "stream": True,
}


#: A Responses request of the same conversation: instructions, a user turn, two function
#: calls and their outputs, one function tool.
RESPONSES_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "instructions": "You are a careful assistant. " * 20,
    "input": [
        {"role": "user", "content": TEXT},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure, let me check."}]},
        *({"type": "function_call", "call_id": f"call_{i}", "name": "lookup", "arguments": '{"q": "paris"}'}
          for i in range(2)),
        *({"type": "function_call_output", "call_id": f"call_{i}", "output": f"1{8 + i} C"} for i in range(2)),
    ],
    "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
}


def median_us(fn: Callable[[], object], calls: int = 2000) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def per_call_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    t = time.perf_counter()
    warm()
    load_ms = (time.perf_counter() - t) * 1e3
    openai_events = replay_openai(COMPLETION, include_usage=True)
    message = openai_response_to_anthropic(COMPLETION)
    anthropic_events = replay_anthropic(message)
    anthropic_request = openai_request_to_anthropic(REQUEST)

    def a2o() -> None:
        s = AnthropicToOpenAIStream(include_usage=True)
        for e in anthropic_events:
            s.feed(e)
        s.finish()

    def o2a() -> None:
        s = OpenAIToAnthropicStream()
        for e in openai_events:
            s.feed(e)
        s.finish()

    rows = [
        (f"replay_openai ({len(openai_events)} chunks)", lambda: replay_openai(COMPLETION, True)),
        ("collect_openai", lambda: collect_openai(openai_events)),
        (f"replay_anthropic ({len(anthropic_events)} events)", lambda: replay_anthropic(message)),
        ("collect_anthropic", lambda: collect_anthropic(anthropic_events)),
        ("openai_request_to_anthropic", lambda: openai_request_to_anthropic(REQUEST)),
        ("anthropic_request_to_openai", lambda: anthropic_request_to_openai(anthropic_request)),
        ("openai_response_to_anthropic", lambda: openai_response_to_anthropic(COMPLETION)),
        ("anthropic_response_to_openai", lambda: anthropic_response_to_openai(message)),
        ("AnthropicToOpenAIStream, whole stream", a2o),
        ("OpenAIToAnthropicStream, whole stream", o2a),
        (f"count_text ({count_text(TEXT)} tokens)", lambda: count_text(TEXT)),
        ("estimate_request_tokens (5 messages, 1 tool)", lambda: estimate_request_tokens("openai", REQUEST)),
    ]
    print(f"tokenizer load (o200k_base): {load_ms:.0f} ms, once per process")
    for name, fn in rows:
        print(f"{name:<48} {per_call_us(fn):8.1f} us/call")
    responses()


def responses() -> None:
    """The Responses API's added work per request, as medians of single calls."""
    from thrifty.server.response_store import ResponseStore

    chunks = replay_openai(COMPLETION, include_usage=True)

    def request() -> dict[str, Any]:
        return chat_request(RESPONSES_REQUEST, [], input_items(RESPONSES_REQUEST["input"]))

    def answer() -> dict[str, Any]:
        return response_object(RESPONSES_REQUEST, "resp_x", 0, output_items(COMPLETION), "tool_calls",
                               COMPLETION["usage"])

    def stream() -> dict[str, Any]:
        t = ChatToResponsesStream(RESPONSES_REQUEST, "resp_x", 0)
        t.start()
        for ev in chunks:
            t.feed(ev)
        final = t.final()
        t.completed_event(final)
        return final

    def whole() -> None:
        request()
        answer()

    def whole_stream() -> None:
        request()
        stream()

    print("Responses API translation (median of single calls):")
    for name, fn in [("request -> chat (6 items, 1 tool)", request), ("chat answer -> response", answer),
                     (f"chat stream ({len(chunks)} chunks) -> Responses events", stream),
                     ("added per request, complete answer", whole), ("added per request, streamed", whole_stream)]:
        print(f"  {name:<46} {median_us(fn):8.1f} us median")
    with tempfile.TemporaryDirectory() as tmp:
        store = ResponseStore(f"sqlite:///{tmp}/r.db")
        items = input_items(RESPONSES_REQUEST["input"])
        final = answer()

        def put() -> None:
            final["id"] = f"resp_{time.perf_counter_ns()}"
            store.put("default", final, items, [])

        print(f"  {'store write (SQLite, WAL, committed)':<46} {median_us(put, 300):8.1f} us median (not translation)")
        store.close()
    passthrough()


def passthrough() -> None:
    """thrifty's own work on a request passed through to a native Responses upstream: the
    chat form the levers read and the upstream body (the stored turns in front of the
    input), then the answer under thrifty's id, or each streamed event relayed."""
    from thrifty.protocol.responses import native_request
    from thrifty.protocol.responses_native import replay_response
    from thrifty.server.responses import PassedStream, ResponseTurn

    history = input_items(RESPONSES_REQUEST["input"])
    request = {**RESPONSES_REQUEST, "input": "And tomorrow?", "previous_response_id": "resp_prev",
               "tools": [*RESPONSES_REQUEST["tools"], {"type": "web_search"}], "reasoning": {"effort": "low"}}
    text = " ".join(["word"] * 86)
    upstream = {"id": "resp_up", "object": "response", "created_at": 0, "status": "completed", "model": "gpt-5",
                "output": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA" + "x" * 2000},
                           {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                "usage": {"input_tokens": 900, "input_tokens_details": {"cached_tokens": 512}, "output_tokens": 420,
                          "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 1320}}
    events = []
    for ev in replay_response(upstream):  # one delta per word, as a live upstream streams them
        data = ev.data
        if isinstance(data, dict) and data.get("type") == "response.output_text.delta":
            words = str(data["delta"]).split(" ")
            events += [type(ev)(event=ev.event, data={**data, "delta": (" " if i else "") + w})
                       for i, w in enumerate(words)]
        else:
            events.append(ev)

    def prepare() -> dict[str, Any]:
        skipped: list[str] = []
        items = input_items(request["input"], skipped)
        chat_request(request, history, items, skipped)
        return native_request(request, history)

    def answer() -> dict[str, Any]:
        turn = ResponseTurn(request, "resp_x", [], history, True)
        return turn.shown(turn.adopt(upstream))

    def stream() -> None:
        relay = PassedStream(ResponseTurn(request, "resp_x", [], history, True))
        for ev in events:
            relay.feed(ev)

    def whole() -> None:
        prepare()
        answer()

    def whole_stream() -> None:
        prepare()
        stream()

    print("Responses API pass-through to a native upstream (median of single calls):")
    for name, fn in [("request -> chat form + upstream body (8 items)", prepare),
                     ("upstream response -> client response", answer),
                     (f"relay {len(events)} upstream events", stream),
                     ("added per request, complete answer", whole), ("added per request, streamed", whole_stream)]:
        print(f"  {name:<46} {median_us(fn):8.1f} us median")


if __name__ == "__main__":
    main()
