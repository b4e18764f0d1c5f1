"""Before `thrifty serve` listens: every durable store it was told to use answers.

A replica that starts while its PostgreSQL is unreachable (a wrong host, a password, a
database that does not exist) would otherwise come up half-configured, or die on a driver
traceback. Here each durable store is tried for up to `server.store_wait` seconds (a blip
during a rolling restart passes), and if one still does not answer, serve exits with one
line naming the store (its URL without the password), what it said, and what to check.

Redis is not a durable store: thrifty serves without it (degraded, see the README's "When a
dependency fails"), so an unreachable Redis is a warning at start, not a refusal.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from thrifty.config import Config
from thrifty.errors import StoreUnreachable
from thrifty.urls import redacted, sqlite_path

__all__ = ["durable_stores", "reach_stores"]

log = logging.getLogger(__name__)


def durable_stores(config: Config) -> list[tuple[str, str]]:
    """(what, url) of each durable store the config names."""
    found = [("store:", config.store)]
    index = config.section("semantic_cache").get("index")
    if isinstance(index, str) and index.startswith(("postgres://", "postgresql://")) and index != config.store:
        found.append(("semantic_cache.index:", index))
    return found


def _probe(url: str) -> None:
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    elif (path := sqlite_path(url)) is not None and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path, timeout=3).close()


def reach_stores(config: Config, probe: Callable[[str], None] = _probe) -> None:
    """Return once every durable store answers; raise StoreUnreachable naming the first that
    still does not after `server.store_wait` seconds."""
    deadline = time.monotonic() + config.server.store_wait
    for what, url in durable_stores(config):
        warned = False
        while True:
            try:
                probe(url)
                break
            except Exception as exc:  # any driver error: the message names it
                reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
                if time.monotonic() >= deadline:
                    raise StoreUnreachable(
                        f"cannot reach the store {redacted(url)} ({what} in the config): {reason[:300]}. "
                        "thrifty serve does not start without its durable store: check that the server runs "
                        "and that host, port, database and credentials are right.") from None
                if not warned:
                    log.warning("store %s does not answer yet (%s); waiting up to %.0f s",
                                redacted(url), reason[:200], config.server.store_wait)
                    warned = True
                time.sleep(0.5)
