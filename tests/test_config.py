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
    text = "models:\n  - name: a\n    provider: openai\n  - name: b\n    provider: bedrock\n"
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
