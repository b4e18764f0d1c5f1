"""Rule routing: what the operator already knows, decided in microseconds before any model runs.

A rule matches on the route and tags, the model the client asked for, the prompt's length, a
regular expression or keywords in it, and the requested max_tokens; the first matching rule
names the model (or a `tier:NAME` alias). Clients may also ask for `tier:NAME` or `auto`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from thrifty.protocol.view import request_text
from thrifty.routing.settings import RouteSettings, Rule, When

AUTO = "auto"
TIER_PREFIX = "tier:"




def requested_max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


@dataclass
class RequestView:
    """What rules look at, taken from one request."""

    route: str
    requested: str
    prompt: str
    full_text: str
    max_tokens: int | None
    tags: dict[str, str] = field(default_factory=dict)

    @cached_property
    def prompt_tokens(self) -> int:
        from thrifty.routing.datasets import count_tokens

        return count_tokens(self.full_text)

    @classmethod
    def of(
        cls,
        body: dict[str, Any],
        route: str = "default",
        tags: dict[str, str] | None = None,
        requested: str = "",
    ) -> RequestView:
        return cls(
            route=route,
            requested=requested or str(body.get("model", "")),
            prompt=request_text(body),
            full_text=request_text(body, user_only=False),
            max_tokens=requested_max_tokens(body),
            tags=dict(tags or {}),
        )


class CompiledRule:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        w = rule.when
        self.regex = re.compile(w.regex, re.I) if w.regex else None
        self.keywords = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(k) for k in w.keywords) + r")(?!\w)", re.I)
            if w.keywords
            else None
        )

    @property
    def label(self) -> str:
        return self.rule.name or self.rule.model

    def matches(self, v: RequestView) -> bool:
        w: When = self.rule.when
        if w.route is not None and w.route != v.route:
            return False
        if any(v.tags.get(k) != val for k, val in w.tags.items()):
            return False
        if w.requested and v.requested not in w.requested:
            return False
        if w.max_tokens_min is not None and (v.max_tokens is None or v.max_tokens < w.max_tokens_min):
            return False
        if w.max_tokens_max is not None and (v.max_tokens is None or v.max_tokens > w.max_tokens_max):
            return False
        if self.keywords is not None and not self.keywords.search(v.prompt):
            return False
        if self.regex is not None and not self.regex.search(v.prompt):
            return False
        if w.prompt_tokens_min is not None and v.prompt_tokens < w.prompt_tokens_min:
            return False
        return not (w.prompt_tokens_max is not None and v.prompt_tokens > w.prompt_tokens_max)


class Rules:
    """An ordered rule list; the first match wins."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = [CompiledRule(r) for r in rules]

    def match(self, view: RequestView) -> CompiledRule | None:
        for r in self.rules:
            if r.matches(view):
                return r
        return None


class UnknownAlias(ValueError):
    """A client asked for a `tier:NAME` the route does not define."""


def is_alias(name: str) -> bool:
    return name == AUTO or name.startswith(TIER_PREFIX)


def resolve_tier(name: str, settings: RouteSettings) -> str:
    """`tier:NAME` -> the configured model; any other name is returned as it is."""
    if not name.startswith(TIER_PREFIX):
        return name
    tier = name[len(TIER_PREFIX) :]
    try:
        return settings.tiers[tier]
    except KeyError:
        known = ", ".join(TIER_PREFIX + t for t in settings.tiers) or "none configured"
        raise UnknownAlias(f"unknown model alias {name!r} on this route (known: {known})") from None
