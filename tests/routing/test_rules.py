from __future__ import annotations

import pytest

from thrifty.protocol.view import request_text
from thrifty.routing.rules import RequestView, Rules, UnknownAlias, resolve_tier
from thrifty.routing.settings import RouteSettings


def settings(**kw: object) -> RouteSettings:
    return RouteSettings.model_validate(kw)


def view(text: str, **kw: object) -> RequestView:
    body = {"model": kw.pop("model", "gpt-4o"), "messages": [{"role": "user", "content": text}], **kw}
    return RequestView.of(body, route=str(body.pop("route", "default")), tags={"feature": "chat"})


def test_rules_first_match_wins() -> None:
    s = settings(
        tiers={"cheap": "mini", "strong": "big"},
        rules=[
            {"name": "short-answers", "when": {"max_tokens_max": 50}, "model": "tier:cheap"},
            {"name": "code", "when": {"regex": r"```|\bdef\b"}, "model": "big"},
            {"name": "translate", "when": {"keywords": ["translate", "in French"]}, "model": "mini"},
            {"name": "long", "when": {"prompt_tokens_min": 200}, "model": "tier:strong"},
            {
                "name": "chat-feature",
                "when": {"tags": {"feature": "chat"}, "requested": ["auto"]},
                "model": "mini",
            },
        ],
    )
    rules = Rules(s.rules)
    assert rules.match(view("hi", max_tokens=20)).label == "short-answers"  # type: ignore[union-attr]
    assert rules.match(view("fix: def f(): pass", max_tokens=500)).label == "code"  # type: ignore[union-attr]
    assert rules.match(view("Please TRANSLATE this")).label == "translate"  # type: ignore[union-attr]
    assert rules.match(view("say it in french")).label == "translate"  # type: ignore[union-attr]
    assert rules.match(view("translated")) is None  # whole words only
    assert rules.match(view("word " * 300)).label == "long"  # type: ignore[union-attr]
    assert rules.match(view("hello", model="auto")).label == "chat-feature"  # type: ignore[union-attr]
    assert rules.match(view("hello")) is None
    assert resolve_tier("tier:cheap", s) == "mini"
    with pytest.raises(UnknownAlias, match="tier:cheap, tier:strong"):
        resolve_tier("tier:medium", s)


def test_bad_regex_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        settings(rules=[{"when": {"regex": "("}, "model": "x"}])


def test_request_text_reads_both_protocols() -> None:
    anthropic = {"system": "sys", "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}
    assert request_text(anthropic) == "q"
    assert request_text(anthropic, user_only=False) == "sys\n\nq"
