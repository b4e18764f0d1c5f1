from typing import Any

from thrifty.compress.messages import text_refs
from thrifty.compress.trim import (
    TrimSettings,
    collapse_separators,
    collapse_whitespace,
    dedupe_paragraphs,
    strip_html,
    trim_refs,
)


def test_whitespace_keeps_indentation_and_code() -> None:
    text = "Hello   world.   \n\n\n\n    indented  line\n```\nx  =  1\n\n\n\ny = 2\n```\nend"
    out = collapse_whitespace(text)
    assert out == "Hello world.\n\n    indented line\n```\nx  =  1\n\n\n\ny = 2\n```\nend"


def test_separators_collapse() -> None:
    assert collapse_separators("a\n----------------\n==========\nb") == "a\n---\n===\nb"
    assert collapse_separators("a\n-----\n-----\n-----\nb") == "a\n---\nb"


def test_html_is_stripped_outside_code() -> None:
    text = '<div class="x"><p>Price: 5&nbsp;&euro;</p><script>track()</script><ul><li>one</li></ul></div>\n```\n<b>keep</b>\n```'
    out = strip_html(text)
    assert "<div" not in out and "track()" not in out and "<p>" not in out
    assert "Price: 5\xa0€" in out and "- one" in out
    assert "<b>keep</b>" in out


def test_dedupe_drops_repeated_paragraphs_only() -> None:
    seen: set[str] = set()
    first = dedupe_paragraphs("Always answer in English and cite your sources.\n\nShort.", seen, 20)
    second = dedupe_paragraphs(
        "always answer in   English and cite your sources.\n\nShort.\n\nNew text here.", seen, 20
    )
    assert first == "Always answer in English and cite your sources.\n\nShort."
    assert second == "Short.\n\nNew text here."


def test_trim_refs_never_touches_the_question_by_default() -> None:
    body = {
        "messages": [
            {
                "role": "system",
                "content": "Be brief.   Be right.\n\n\n\nAlways answer in English please, thank you.",
            },
            {"role": "user", "content": "Always answer in English please, thank you.\n\nOld   question?"},
            {"role": "assistant", "content": "Old answer."},
            {"role": "user", "content": "Always answer in English please, thank you.\n\nWhat   is  2+2?   "},
        ]
    }
    refs = text_refs("openai", body)
    trim_refs(refs, TrimSettings(), protected=3)
    assert (
        body["messages"][0]["content"] == "Be brief. Be right.\n\nAlways answer in English please, thank you."
    )
    assert body["messages"][1]["content"] == "Old question?"
    assert (
        body["messages"][3]["content"] == "Always answer in English please, thank you.\n\nWhat   is  2+2?   "
    )


def test_boilerplate_patterns_and_anthropic_system_blocks() -> None:
    system = [{"type": "text", "text": "Rules.\nSent from my iPhone\nMore rules."}]
    body: dict[str, Any] = {
        "system": system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}],
    }
    refs = text_refs("anthropic", body)
    trim_refs(refs, TrimSettings(boilerplate=[r"^Sent from my iPhone\n"]), protected=0)
    assert system[0]["text"] == "Rules.\nMore rules."
