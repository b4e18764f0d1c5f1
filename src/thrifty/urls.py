"""Store URLs, read one way everywhere: which SQLite file a `sqlite://` URL names, a path or
URL taken as a store URL, and a URL as it may appear in messages and logs (no password)."""

from __future__ import annotations

__all__ = ["redacted", "sqlite_path", "store_url"]

_SCHEMES = ("sqlite://", "postgres://", "postgresql://")


def redacted(url: str) -> str:
    """`url` with the password of its user part removed (`postgresql://u:pw@h/db` -> `postgresql://u@h/db`)."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, auth = head.partition("://")
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}" if user else f"{scheme}://{tail}"


def sqlite_path(url: str) -> str | None:
    """The file a `sqlite://` URL names (`sqlite:///rel.db` is relative, `sqlite:////abs.db`
    absolute, `sqlite://:memory:` in memory, a bare `sqlite://` is `thrifty.db`); None for any
    other URL."""
    if not url.startswith("sqlite://"):
        return None
    return url[len("sqlite://"):].removeprefix("/") or "thrifty.db"


def store_url(where: str) -> str:
    """`where` as a store URL: a URL as it is, a file path as the SQLite file it names."""
    return where if where.startswith(_SCHEMES) else f"sqlite:///{where}"
