"""Offline token estimates with o200k_base."""

from __future__ import annotations

from thrifty.ledger.tokens import (
    ANTHROPIC_IMAGE_TOKENS,
    OPENAI_IMAGE_TOKENS,
    OPENAI_LOW_DETAIL_IMAGE_TOKENS,
    count_text,
    estimate_body_output_tokens,
    estimate_output_tokens,
    estimate_request_tokens,
)


def test_count_text_with_o200k() -> None:
    assert count_text("") == 0
    assert count_text("Hello, world!") == 4  # Hello | , | world | !
    assert count_text("<|endoftext|>") > 1  # special tokens in user text are plain text
    assert count_text("\ud800 lone surrogate") > 0
    long = "The quick brown fox jumps over the lazy dog. " * 1000
    assert count_text(long) == 10_001  # ten tokens a sentence, the trailing space apart


def test_openai_request_follows_openai_message_accounting() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!", "name": "ann"},
        ],
    }
    # 3 framing + role + text per message, 1 + name for the name, 3 to prime the reply
    expected = (
        (3 + 1 + count_text("You are a helpful assistant.")) + (3 + 1 + count_text("Hello!") + 1 + 1) + 3
    )
    assert estimate_request_tokens("openai", body) == expected == 21


def test_tools_images_and_tool_calls_add_tokens() -> None:
    base = {"messages": [{"role": "user", "content": "Weather?"}]}
    plain = estimate_request_tokens("openai", base)
    tool = {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    assert estimate_request_tokens("openai", {**base, "tools": [tool]}) > plain + 10
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    low = {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
    with_images = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}, image, low]}]
    }
    assert (
        estimate_request_tokens("openai", with_images)
        == plain + OPENAI_IMAGE_TOKENS + OPENAI_LOW_DETAIL_IMAGE_TOKENS
    )
    call = {"id": "c", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    turn = {"messages": [*base["messages"], {"role": "assistant", "content": None, "tool_calls": [call]}]}
    assert estimate_request_tokens("openai", turn) > plain + count_text('{"city": "Paris"}')


def test_anthropic_request_counts_system_blocks_and_tools() -> None:
    body = {
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "url", "url": "u"}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "look", "input": {"q": "cat"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "A cat."}]},
        ],
        "tools": [{"name": "look", "input_schema": {"type": "object"}}],
    }
    total = estimate_request_tokens("anthropic", body)
    without_system = estimate_request_tokens("anthropic", {**body, "system": None})
    assert total - without_system == 3 + count_text("You are terse.")
    assert total > ANTHROPIC_IMAGE_TOKENS + count_text("What is this?") + count_text("A cat.")
    # the same conversation in OpenAI's shape lands close (images aside)
    text_only = {"messages": [{"role": "user", "content": "What is this?"}]}
    assert estimate_request_tokens("anthropic", text_only) == estimate_request_tokens("openai", text_only)


def test_output_estimates() -> None:
    assert estimate_output_tokens("Paris is the capital of France.") == count_text(
        "Paris is the capital of France."
    )
    openai_body = {
        "choices": [
            {
                "message": {
                    "content": "Sure.",
                    "tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}],
                }
            }
        ]
    }
    assert estimate_body_output_tokens("openai", openai_body) == count_text("Sure.") + count_text(
        "f"
    ) + count_text('{"a":1}')
    anthropic_body = {
        "content": [{"type": "thinking", "thinking": "Hmm."}, {"type": "text", "text": "Sure."}]
    }
    assert estimate_body_output_tokens("anthropic", anthropic_body) == count_text("Hmm.") + count_text(
        "Sure."
    )
    assert estimate_body_output_tokens("openai", {}) == 0
