"""Store URLs as they may appear in messages and logs: never with their password."""

from __future__ import annotations

__all__ = ["redacted"]


def redacted(url: str) -> str:
    """`url` with the password of its user part removed (`postgresql://u:pw@h/db` -> `postgresql://u@h/db`)."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, auth = head.partition("://")
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}" if user else f"{scheme}://{tail}"
