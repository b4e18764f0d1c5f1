"""Config errors name the key and the line, so a person can fix the file."""

from __future__ import annotations

import pytest

from thrifty.config import ConfigError, parse_config


def test_a_valid_config() -> None:
    cfg = parse_config("""
server: {host: 127.0.0.1, port: 9000}
store: sqlite:///x.db
models:
  - name: gpt-4o-mini
    provider: openai
    model: gpt-4o-mini
    api_key_env: OPENAI_API_KEY
    price: {input: 0.15, output: 0.60}
routes:
  search:
    cache: {ttl: 60}
cache: {ttl: 3600, enabled: true}
""")
    assert cfg.server.port == 9000 and cfg.model("gpt-4o-mini").price.input == 0.15  # type: ignore[union-attr]
    assert cfg.lever_settings("cache", "search") == {"ttl": 60, "enabled": True}
    assert cfg.lever_settings("cache", "other") == {"ttl": 3600, "enabled": True}


def test_bad_value_names_key_and_line() -> None:
    text = "models:\n  - name: a\n    provider: openai\n  - name: b\n    provider: no-such-provider\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "thrifty.yaml")
    msg = str(err.value)
    assert "thrifty.yaml:5" in msg and "models[1].provider" in msg


def test_unknown_key_is_reported_with_its_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("server:\n  host: 127.0.0.1\n  prot: 80\n", "c.yaml")
    assert "c.yaml:3: server.prot: unknown key" in str(err.value)


def test_fallback_to_an_unknown_model() -> None:
    with pytest.raises(ConfigError, match="falls back to 'nope'"):
        parse_config("models:\n  - {name: a, provider: openai, fallbacks: [nope]}\n")


def test_not_yaml() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("models: [\n")


def test_unknown_lever_in_a_route() -> None:
    with pytest.raises(ConfigError, match="routes.search.turbo: unknown lever"):
        parse_config("routes:\n  search:\n    turbo: {}\n")


# -- every section is validated when the file is read -----------------------------------------

LEVER_TYPOS = [
    ("cache: {tll: 600}\n", "c.yaml:1: cache.tll: unknown key"),
    ("semantic_cache:\n  enabled: true\n  min_cosin: 0.9\n", "c.yaml:3: semantic_cache.min_cosin: unknown key"),
    ("dedup: {enabled: yes, wait_ms: -5}\n", "c.yaml:1: dedup."),
    ("compress:\n  trim: {whitespce: true}\n", "c.yaml:2: compress.trim.whitespce: unknown key"),
    ("cap: {max_tokns: 100}\n", "c.yaml:1: cap.max_tokns: unknown key"),
    ("canonicalize: {sort_keys: maybe}\n", "c.yaml:1: canonicalize.sort_keys"),
    ("route: {apply_to: some}\n", "c.yaml:1: route.apply_to"),
    ("shadow: {sample: 2}\n", "c.yaml:1: shadow.sample"),
    ("engine: {n_ctx: 10}\n", "c.yaml:1: engine.n_ctx"),
    ("metrics: {publik: true}\n", "c.yaml:1: metrics.publik: unknown key"),
    ("dashboard: {nope: 1}\n", "c.yaml:1: dashboard.nope: unknown key"),
    ("routes:\n  search:\n    cache:\n      ttl: 60\n      stor: memory\n", "c.yaml:5: routes.search.cache.stor: unknown key"),
    ("cache: {ttl: 60}\nroutes:\n  chat:\n    cap: {enabled: maybe}\n", "c.yaml:4: routes.chat.cap.enabled"),
    ("cachee: {ttl: 60}\n", "c.yaml:1: cachee: unknown key"),
    ("models:\n  - {name: l, provider: local, options: {n_ctxx: 512}}\n", "c.yaml:2: models[0].options.n_ctxx: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), LEVER_TYPOS)
def test_a_typo_in_any_section_is_refused_at_load(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yaml")
    assert expected in str(err.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("cache: {tll: 1}\ncap: {max_tokns: 2}\n", "c.yaml")
    assert "cache.tll" in str(err.value) and "cap.max_tokns" in str(err.value)


def test_a_section_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="c.yaml:1: cache: must be a mapping"):
        parse_config("cache: 5\n", "c.yaml")
