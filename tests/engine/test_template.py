"""Prompts: plain transcripts for base models, chat templates for instruction-tuned ones."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.engine.runtime import LocalEngine
from thrifty.engine.template import PLAIN_STOP, is_base_model, plain_prompt
from thrifty.protocol.view import content_text

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]},
]


def test_plain_prompt_is_a_transcript_that_stops_before_the_next_turn() -> None:
    prompt = plain_prompt([("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")])
    assert prompt.text == "Be brief.\n\nUser: Hi\nAssistant: Hello\nUser: Bye\nAssistant:"
    assert prompt.stop == [PLAIN_STOP] and not prompt.special


def test_message_parts_are_joined() -> None:
    assert content_text(MESSAGES[1]["content"], sep="") == "Hi there"
    assert content_text(None) == ""


def test_base_model_detection() -> None:
    assert is_base_model("Gemma 3 270m", None)
    assert is_base_model("Gemma 3 270m", "{{ messages }}")
    assert not is_base_model("gemma-3-270m-it-Q4_K_M.gguf", "{{ messages }}")
    assert not is_base_model("Qwen2.5 0.5B Instruct", "{{ messages }}")


def test_the_bundled_base_model_gets_the_plain_template(engine: LocalEngine) -> None:
    assert engine.template == "plain"
    prompt = engine.render(MESSAGES)
    assert prompt.text.endswith("User: Hi there\nAssistant:")


def test_a_chat_template_renders_markup_that_tokenizes_as_special_tokens(
    engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "template", "chat")
    monkeypatch.setattr(engine, "chat_template", "gemma")
    prompt = engine.render(MESSAGES)
    assert prompt.special and "<start_of_turn>user\n" in prompt.text
    assert prompt.text.endswith("<start_of_turn>model\n")
    start = engine.model.tokenize("<start_of_turn>", add_special=False, parse_special=True)
    assert len(start) == 1  # one control token, not the characters of the markup
    assert engine.encode(prompt).count(start[0]) == 2
