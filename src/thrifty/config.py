"""Typed configuration: a YAML file validated up front, with errors that name the key and line.

Core keys (server, store, ledger, models) are typed here. Each lever and tool owns a section
of the same name (`cache:`, `route:`, `engine:`, ...) with its own settings model, registered
through `thrifty.plugins`; `routes.<name>.<lever>` overrides a lever for one traffic class.
`parse_config` validates all of it when the file is read: every section, every route
override and every model's provider options, each error with `file:line: key: message`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from thrifty.errors import ConfigError

#: Base URLs of the providers that have a well-known one.
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class PriceConfig(Strict):
    """USD per 1M tokens. Unset cache prices fall back to the catalog, then to `input`."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    cache_write_1h: float | None = Field(default=None, ge=0)


class ModelConfig(Strict):
    name: str = Field(min_length=1)
    #: The provider kind: a name registered in the `thrifty.providers` entry-point group
    #: (openai, anthropic, local, replay, or a plugin's).
    provider: str
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    price: PriceConfig | None = None
    #: Seconds for the whole upstream call (and between stream chunks).
    timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    #: First retry waits about this many seconds (doubling, with full jitter), unless the
    #: upstream's Retry-After says otherwise.
    retry_backoff: float = Field(default=0.5, ge=0)
    #: Consecutive failures that open the circuit, and seconds it stays open.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown: float = Field(default=30.0, ge=0)
    #: Reported usage above this many tokens is implausible: flagged and priced from an
    #: estimate of the texts (default: 4M, see thrifty.ledger.usage_check).
    max_usage_tokens: int | None = Field(default=None, gt=0)
    #: Other configured model names to try, in order, when this one fails.
    fallbacks: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    #: Provider-specific settings (the local engine's context size, a replay dataset, ...),
    #: validated by the provider kind's `Options` model.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, v: str) -> str:
        from thrifty import plugins

        known = plugins.providers()
        if v not in known:
            raise ValueError(f"unknown provider {v!r}; known: {', '.join(sorted(known))}")
        return v

    def typed_options(self) -> BaseModel | None:
        """`options` validated by the provider kind's `Options` model (None when it has none)."""
        from thrifty import plugins

        model = getattr(plugins.providers()[self.provider], "Options", None)
        if model is None:
            return None
        return model.model_validate(self.options)

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    def api_key(self) -> str | None:
        """The provider key from the environment. It is never logged or stored."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env)


class KeyConfig(Strict):
    """A gateway key. Only its sha256 is kept: `sha256` in config, or the key in `key_env`."""

    name: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    key_env: str | None = None
    tenant: str | None = None
    admin: bool = False


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    keys: list[KeyConfig] = Field(default_factory=list)
    #: Seconds a connection may take to send a whole request head (thrifty.server.timeouts).
    header_timeout: float = Field(default=10.0, gt=0)
    #: Seconds a request may take to send its body (answered 408 past it).
    body_timeout: float = Field(default=60.0, gt=0)
    #: Seconds an idle keep-alive connection stays open between requests.
    idle_timeout: float = Field(default=75.0, gt=0)
    #: Seconds `thrifty serve` waits at start for a durable store (PostgreSQL) to answer
    #: before it exits naming it (a replica restarted during a short blip still starts).
    store_wait: float = Field(default=15.0, ge=0)
    #: Requests (POST) in flight past which a replica answers 503 with Retry-After at once
    #: rather than queue; None: no limit. LLM calls last seconds, so set it from a load test.
    max_in_flight: int | None = Field(default=None, ge=1)


class LedgerConfig(Strict):
    flush_interval: float = Field(default=0.25, gt=0)
    batch_size: int = Field(default=512, gt=0)
    #: Keep request and response bodies in the ledger (for audit and fine-tune export).
    store_bodies: bool = False
    # -- reliability (thrifty.ledger.journal, thrifty.ledger.spool) --
    #: Every row is in the local journal within this many ms of its request's end, so kill -9
    #: loses at most these rows (0: journaled before the request's handler returns; null: no
    #: journal, and kill -9 loses up to `flush_interval` of rows).
    durability_ms: float | None = Field(default=10.0, ge=0)
    #: fsync the journal too (survives a power cut, not only a killed process; costs more).
    fsync: bool = False
    #: Where the spool and journal live; default: derived from `store` (never the working directory).
    spool_dir: str | None = None
    #: Rows held in memory at most while the store is slow or down; the rest go to the spool.
    max_pending: int = Field(default=20_000, gt=0)
    #: Longest wait, in seconds, between two tries of a failing store.
    retry_max: float = Field(default=2.0, gt=0)


class Config(Strict):
    """The whole configuration. Lever and tool sections are the registered extra keys
    (`section(name)`); anything else at the top level is refused."""

    model_config = ConfigDict(extra="allow", frozen=False)

    server: ServerConfig = Field(default_factory=ServerConfig)
    store: str = "sqlite:///thrifty.db"
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    models: list[ModelConfig] = Field(default_factory=list)
    #: Redis shared by every replica: the default store of the exact cache, in-flight dedup and
    #: counters (a lever's own setting wins). None keeps them in this process.
    redis: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://.+")
    #: Per-traffic-class overrides of lever sections: routes.<route>.<lever>: {...}
    routes: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    source: str | None = Field(default=None, exclude=True)
    lines: dict[tuple[str | int, ...], int] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _known_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from thrifty import plugins

        known = plugins.sections()
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            if key not in known:
                raise PydanticCustomError("extra_forbidden", "unknown key", {"key": key})
            if value is None:
                data = {**data, key: {}}
            elif not isinstance(value, dict):
                raise PydanticCustomError("section_type", "must be a mapping of settings", {"key": key})
        return data

    @field_validator("routes")
    @classmethod
    def _route_levers(cls, v: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
        from thrifty import plugins

        known = plugins.sections()
        for route, levers in v.items():
            for lever in levers:
                if lever not in known:
                    raise ValueError(f"routes.{route}.{lever}: unknown lever; known: {', '.join(sorted(known))}")
        return v

    def model_post_init(self, __context: Any) -> None:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: the name {dupes[0]!r} is used twice")
        for m in self.models:
            for fb in m.fallbacks:
                if fb not in names:
                    raise ValueError(f"models: {m.name!r} falls back to {fb!r}, which is not a configured model")

    # -- lookups -----------------------------------------------------------------------

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def has_model(self, name: str) -> bool:
        return any(m.name == name for m in self.models)

    def has_section(self, name: str) -> bool:
        """Whether the config has a top-level section `name` (even an empty one)."""
        return name in (self.model_extra or {})

    def section(self, name: str) -> dict[str, Any]:
        """The raw top-level section `name` (empty when absent)."""
        value = (self.model_extra or {}).get(name)
        return dict(value) if isinstance(value, dict) else {}

    def lever_settings(self, lever: str, route: str = "default") -> dict[str, Any]:
        """A lever's settings for `route`: the top-level section with the route's keys on top."""
        base: dict[str, Any] = self.section(lever)
        override = self.routes.get(route, {}).get(lever)
        if override:
            base.update(override)
        return base

    def lever_routes(self, lever: str) -> list[str]:
        """Routes that override `lever`."""
        return [r for r, levers in self.routes.items() if lever in levers]

    def line_of(self, *path: str | int) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


M = TypeVar("M", bound=BaseModel)


def lever_model(config: Config, lever: str, model: type[M], route: str = "default") -> M:
    """Validate a lever's settings for `route` with `model`, reporting errors with YAML lines
    (at the route override when the key comes from it, else at the top-level section)."""
    data = config.lever_settings(lever, route)
    try:
        # The shared stores are the validation context: a settings model may default to them.
        return model.model_validate(data, context={"redis": config.redis, "store": config.store})
    except ValidationError as exc:
        override = config.routes.get(route, {}).get(lever) or {}

        def prefix(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
            return ("routes", route, lever) if loc and loc[0] in override else (lever,)

        raise ConfigError(_describe(exc, config, prefix)) from None


def check_sections(config: Config) -> None:
    """Validate every registered section present in `config`, for the default traffic class
    and every route override, and every model's provider options; raise one `ConfigError`
    listing all the problems, each with file, line and key."""
    from thrifty import plugins

    problems: list[str] = []
    for name, model in plugins.sections().items():
        overriding = config.lever_routes(name)
        if not config.has_section(name) and not overriding:
            continue
        for route in ["default", *overriding]:
            try:
                lever_model(config, name, model, route)
            except ConfigError as exc:
                problems.extend(p for p in _lines_of(exc) if p not in problems)
    for i, m in enumerate(config.models):
        try:
            m.typed_options()
        except ValidationError as exc:
            problems.extend(_lines_of(ConfigError(_describe(exc, config, _fixed(("models", i, "options"))))))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _fixed(prefix: tuple[str | int, ...]) -> Callable[[tuple[str | int, ...]], tuple[str | int, ...]]:
    return lambda loc: prefix


def _lines_of(exc: ConfigError) -> list[str]:
    return [line.strip() for line in exc.message.splitlines()[1:] if line.strip()]


def _describe(
    exc: ValidationError, config: Config, prefix: Callable[[tuple[str | int, ...]], tuple[str | int, ...]] | None = None
) -> str:
    parts = []
    for err in exc.errors():
        own = tuple(p for p in err["loc"] if isinstance(p, str | int))
        if not own and isinstance(err.get("ctx"), dict) and "key" in err["ctx"]:
            own = (err["ctx"]["key"],)  # a top-level key refused by Config's own check
        loc = (prefix(own) if prefix else ()) + own
        dotted = _dotted(loc)
        line = config.line_of(*loc)
        where = f"{config.source or 'config'}:{line}" if line else (config.source or "config")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if dotted:
            parts.append(f"{where}: {dotted}: {msg}")
        else:
            parts.append(f"{where}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(parts)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key and sequence item."""


def _load_with_lines(text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    lines: dict[tuple[str | int, ...], int] = {}
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lines

        def walk(n: yaml.Node, path: tuple[str | int, ...]) -> None:
            if isinstance(n, yaml.MappingNode):
                for k, v in n.value:
                    key = k.value
                    lines[path + (key,)] = k.start_mark.line + 1
                    walk(v, path + (key,))
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines[path + (i,)] = item.start_mark.line + 1
                    walk(item, path + (i,))

        walk(node, ())
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return data, lines


def parse_config(text: str, source: str | None = None) -> Config:
    """Parse and validate YAML text into a Config."""
    try:
        data, lines = _load_with_lines(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source or 'config'}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping of keys such as server, models")
    holder = Config.model_construct(source=source, lines=lines)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, holder)) from None
    except ValueError as exc:  # model_post_init checks
        raise ConfigError(f"{source or 'config'}: {exc}") from None
    config.source = source
    config.lines = lines
    check_sections(config)
    return config


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return parse_config(text, source=str(p))
