"""Virtual keys and teams, and the store they live in (the ledger's SQLite or PostgreSQL).

A key's material (`tk-<id>-<secret>`) is shown once, when it is created or rotated; the store
keeps its sha256 only. A presented key is found by its id (not secret) and then compared to
the stored hash with `hmac.compare_digest`, so the time a check takes says nothing about the
secret. Teams carry budgets and limits that all their keys share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thrifty.migrations import Dialect, Migration
from thrifty.spend.limits import BudgetSpec, Limits
from thrifty.sqldb import SQLDatabase

__all__ = ["MIGRATIONS", "KeySpec", "KeyStore", "Team", "TeamSpec", "VirtualKey", "key_id_of", "parse_expiry"]

PREFIX = "tk-"
_MATERIAL = re.compile(r"^tk-([0-9a-f]{12})-[A-Za-z0-9_-]{20,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:@/-]{1,64}$")


def _hash(material: str) -> str:
    return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()


def key_id_of(presented: str | None) -> str | None:
    """The id inside a virtual key's material; None for anything else (a static key)."""
    if not presented or not presented.startswith(PREFIX):
        return None
    m = _MATERIAL.match(presented)
    return m.group(1) if m else ""


def parse_expiry(value: str | float | None, now: float | None = None) -> float | None:
    """An expiry as epoch seconds: a number, an ISO date/time, or a span from now (`30d`)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    m = re.match(r"^(\d+)\s*(m|h|d)$", text)
    if m:
        return (now or time.time()) + int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expires {value!r}: use an ISO date (2027-01-31), a span (30d, 12h) or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _name(v: str, what: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{what} {v!r}: use 1 to 64 letters, digits and _.:@/-")
    return v


class KeySpec(BaseModel):
    """What a key is created with (CLI flags and the admin API's JSON body)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    owner: str | None = None
    team: str | None = None
    tenant: str | None = None
    #: Configured model names, route names (the `route` tag) and aliases (`auto`) the key may
    #: use; empty: no restriction of that kind.
    models: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    #: Tags stamped on every request of the key.
    tags: dict[str, str] = Field(default_factory=dict)
    expires: str | float | None = None
    budgets: list[BudgetSpec] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    #: Seconds in which the same request from this key is answered from the first result.
    debounce: float = Field(default=0.0, ge=0, le=3600)

    @field_validator("name")
    @classmethod
    def _key_name(cls, v: str) -> str:
        return _name(v, "name")

    @field_validator("team", "owner", "tenant")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return None if v is None else _name(v, "name")

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            _name(k, "tag")
            _name(val, "tag value")
        return v

    @field_validator("expires")
    @classmethod
    def _expires(cls, v: str | float | None) -> str | float | None:
        at = parse_expiry(v)
        if at is not None and at <= time.time():
            raise ValueError("expires is in the past")
        return at


class TeamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    budgets: list[BudgetSpec] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)

    @field_validator("name")
    @classmethod
    def _team_name(cls, v: str) -> str:
        return _name(v, "name")


@dataclass
class VirtualKey:
    key_id: str
    name: str
    sha256: str
    owner: str | None = None
    team: str | None = None
    tenant: str | None = None
    models: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    expires_at: float | None = None
    budgets: list[BudgetSpec] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    debounce: float = 0.0
    created_at: float = 0.0
    revoked_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def matches(self, material: str) -> bool:
        """Timing-safe: whether `material` is this key's."""
        return hmac.compare_digest(_hash(material), self.sha256)

    def public(self) -> dict[str, Any]:
        """Everything but the hash (what list/show print)."""
        return {
            "id": self.key_id, "name": self.name, "owner": self.owner, "team": self.team,
            "tenant": self.tenant or self.name, "models": self.models, "routes": self.routes,
            "aliases": self.aliases, "tags": self.tags, "expires_at": self.expires_at,
            "budgets": [b.model_dump(mode="json") for b in self.budgets],
            "limits": self.limits.model_dump(mode="json", exclude_none=True), "debounce": self.debounce,
            "created_at": self.created_at, "revoked_at": self.revoked_at,
            "status": "revoked" if self.revoked_at is not None else (
                "expired" if self.expires_at is not None and self.expires_at <= time.time() else "active"),
        }  # fmt: skip


@dataclass
class Team:
    name: str
    budgets: list[BudgetSpec] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    created_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "budgets": [b.model_dump(mode="json") for b in self.budgets],
                "limits": self.limits.model_dump(mode="json", exclude_none=True), "created_at": self.created_at}


def _schema(dialect: Dialect) -> list[str]:
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return [
        f"""CREATE TABLE IF NOT EXISTS spend_keys (
            key_id TEXT PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, owner TEXT, team TEXT,
            tenant TEXT, spec TEXT NOT NULL, expires_at {real}, created_at {real} NOT NULL, revoked_at {real})""",
        "CREATE INDEX IF NOT EXISTS spend_keys_name ON spend_keys (name)",
        f"""CREATE TABLE IF NOT EXISTS spend_teams (
            name TEXT PRIMARY KEY, spec TEXT NOT NULL, created_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS spend_alerts (
            scope TEXT NOT NULL, window_start {real} NOT NULL, threshold {real} NOT NULL,
            fired_at {real} NOT NULL, attempts INTEGER NOT NULL, delivered_at {real}, last_error TEXT,
            PRIMARY KEY (scope, window_start, threshold))""",
    ]


#: The spend tables' schema history (see `thrifty.migrations`).
MIGRATIONS = (Migration("spend_0001_keys_teams_alerts", _schema),)

_KEY_COLUMNS = "key_id, name, sha256, owner, team, tenant, spec, expires_at, created_at, revoked_at"


class KeyStore:
    """Keys, teams and alert deliveries in the store named by `url`. Blocking; thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = SQLDatabase(url, "spend", MIGRATIONS)
        self.dialect: Dialect = self._db.dialect
        self._run = self._db.run

    def close(self) -> None:
        self._db.close()

    # -- keys --------------------------------------------------------------------------------

    def create_key(self, spec: KeySpec) -> tuple[VirtualKey, str]:
        """A new key and its material (shown once)."""
        if self.key_by_name(spec.name) is not None:
            raise ValueError(f"name: a key named {spec.name!r} exists; revoke it or pick another name")
        key_id = secrets.token_hex(6)
        material = f"{PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        now = time.time()
        stored = spec.model_dump(mode="json", exclude={"name", "owner", "team", "tenant", "expires"})
        self._run(
            f"INSERT INTO spend_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key_id, spec.name, _hash(material), spec.owner, spec.team, spec.tenant, json.dumps(stored),
             spec.expires, now, None),
        )
        key = self.key(key_id)
        assert key is not None
        return key, material

    def rotate(self, key_id: str) -> tuple[VirtualKey, str]:
        """New material for the same key (its budgets and counters go on); the old one stops working."""
        key = self.key(key_id)
        if key is None or key.revoked_at is not None:
            raise KeyError(key_id)
        material = f"{PREFIX}{key.key_id}-{secrets.token_urlsafe(32)}"
        self._run("UPDATE spend_keys SET sha256 = ? WHERE key_id = ?", (_hash(material), key.key_id))
        key.sha256 = _hash(material)
        return key, material

    def revoke(self, key_id: str) -> VirtualKey:
        key = self.key(key_id)
        if key is None:
            raise KeyError(key_id)
        if key.revoked_at is None:
            key.revoked_at = time.time()
            self._run("UPDATE spend_keys SET revoked_at = ? WHERE key_id = ?", (key.revoked_at, key.key_id))
        return key

    def key(self, ref: str) -> VirtualKey | None:
        """A key by id, or by name when no id matches."""
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM spend_keys WHERE key_id = ?", (ref,))
        if not rows:
            return self.key_by_name(ref)
        return _key_of(rows[0])

    def key_by_id(self, key_id: str) -> VirtualKey | None:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM spend_keys WHERE key_id = ?", (key_id,))
        return _key_of(rows[0]) if rows else None

    def key_by_name(self, name: str) -> VirtualKey | None:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM spend_keys WHERE name = ? AND revoked_at IS NULL", (name,))
        return _key_of(rows[0]) if rows else None

    def all_keys(self) -> list[VirtualKey]:
        return [_key_of(r) for r in self._run(f"SELECT {_KEY_COLUMNS} FROM spend_keys ORDER BY created_at")]

    # -- teams -------------------------------------------------------------------------------

    def put_team(self, spec: TeamSpec) -> Team:
        stored = json.dumps(spec.model_dump(mode="json", exclude={"name"}))
        now = time.time()
        if self.dialect == "sqlite":
            sql = ("INSERT INTO spend_teams (name, spec, created_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec")
        else:
            sql = ("INSERT INTO spend_teams (name, spec, created_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec")
        self._run(sql, (spec.name, stored, now))
        team = self.team(spec.name)
        assert team is not None
        return team

    def team(self, name: str) -> Team | None:
        rows = self._run("SELECT name, spec, created_at FROM spend_teams WHERE name = ?", (name,))
        return _team_of(rows[0]) if rows else None

    def teams(self) -> list[Team]:
        return [_team_of(r) for r in self._run("SELECT name, spec, created_at FROM spend_teams ORDER BY name")]

    # -- alerts ------------------------------------------------------------------------------

    def claim_alert(self, scope: str, window_start: float, threshold: float) -> bool:
        """True for the one caller (of every replica) that first claims this alert."""
        sql = ("INSERT INTO spend_alerts (scope, window_start, threshold, fired_at, attempts) VALUES (?, ?, ?, ?, 0) "
               "ON CONFLICT DO NOTHING")
        return self._db.changed(sql, (scope, window_start, threshold, time.time())) == 1

    def record_delivery(self, scope: str, window_start: float, threshold: float, attempts: int,
                        delivered: bool, error: str | None) -> None:
        self._run("UPDATE spend_alerts SET attempts = ?, delivered_at = ?, last_error = ? WHERE scope = ? "
                  "AND window_start = ? AND threshold = ?",
                  (attempts, time.time() if delivered else None, error, scope, window_start, threshold))

    def alerts(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT scope, window_start, threshold, fired_at, attempts, delivered_at, last_error "
                         "FROM spend_alerts ORDER BY fired_at")
        names = ("scope", "window_start", "threshold", "fired_at", "attempts", "delivered_at", "last_error")
        return [dict(zip(names, r, strict=True)) for r in rows]


def _key_of(row: tuple[Any, ...]) -> VirtualKey:
    key_id, name, sha, owner, team, tenant, spec, expires_at, created_at, revoked_at = row
    s = json.loads(spec)
    return VirtualKey(
        key_id=key_id, name=name, sha256=sha, owner=owner, team=team, tenant=tenant,
        models=list(s.get("models", [])), routes=list(s.get("routes", [])), aliases=list(s.get("aliases", [])),
        tags=dict(s.get("tags", {})), expires_at=expires_at,
        budgets=[BudgetSpec.model_validate(b) for b in s.get("budgets", [])],
        limits=Limits.model_validate(s.get("limits", {})), debounce=float(s.get("debounce", 0.0)),
        created_at=created_at, revoked_at=revoked_at,
    )  # fmt: skip


def _team_of(row: tuple[Any, ...]) -> Team:
    name, spec, created_at = row
    s = json.loads(spec)
    return Team(name=name, budgets=[BudgetSpec.model_validate(b) for b in s.get("budgets", [])],
                limits=Limits.model_validate(s.get("limits", {})), created_at=created_at)
