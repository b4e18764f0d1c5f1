"""How much the protocol layer adds per request: collect, replay, translate, token estimates.

The gateway's overhead budget is about a millisecond a request, so each operation here is
timed on a typical answer (about 300 words of text and two tool calls) and printed in
microseconds per call. Run: `PYTHONPATH=src python benchmarks/protocol_speed.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from thrifty.ledger.tokens import count_text, estimate_request_tokens, warm
from thrifty.protocol.anthropic import collect_anthropic, replay_anthropic
from thrifty.protocol.openai import collect_openai, replay_openai
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


if __name__ == "__main__":
    main()
