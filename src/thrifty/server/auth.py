"""Gateway keys: only their sha256 is kept; a request names its key in Authorization or x-api-key."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from thrifty.config import ConfigError, KeyConfig


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the key's name, its tenant and whether it may use admin routes."""

    name: str | None
    tenant: str
    admin: bool


ANONYMOUS = Principal(name=None, tenant="default", admin=True)


def hash_key(key: str) -> str:
    # surrogateescape: a header that is not UTF-8 arrives with its bytes escaped; hash those bytes.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class KeyRing:
    def __init__(self, keys: list[KeyConfig]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for k in keys:
            digest = k.sha256
            if digest is None:
                if not k.key_env:
                    raise ConfigError(f"server.keys: key {k.name!r} needs `sha256` or `key_env`")
                value = os.environ.get(k.key_env)
                if not value:
                    raise ConfigError(
                        f"server.keys: key {k.name!r} reads ${k.key_env}, which is not set in the environment"
                    )
                digest = hash_key(value)
            self._by_hash[digest] = Principal(name=k.name, tenant=k.tenant or k.name, admin=k.admin)

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def lookup(self, presented: str | None) -> Principal | None:
        """The principal for a presented key, or None. Constant-time in the key's content."""
        if not self._by_hash:
            return ANONYMOUS
        if not presented:
            return None
        digest = hash_key(presented)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
