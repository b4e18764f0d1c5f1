"""Stored Responses-API responses, in the same database as the ledger.

A client continues a conversation by naming an earlier response (`previous_response_id`),
possibly on another replica and the moment it has read the answer. So a response is
written synchronously, before its reply ends, to the shared store (SQLite by default,
PostgreSQL when the ledger is there): never to a process-local cache, never behind a
flush interval. Each row keeps what a follow-up needs to rebuild the whole conversation:
the items of the turns before (`history`), this turn's input items, and the response
itself (whose `output` is this turn's answer). Every read and delete is scoped to the
tenant that wrote the row, so another tenant's id is simply not found.

Stored responses expire, as OpenAI's do (30 days): the `responses:` config section

    responses:
      ttl_days: 30          # a response older than this is not found (null: kept forever)
      purge_interval: 3600  # seconds between deletions of expired rows (one at start too)

An expired row is never served, whether or not the purge has deleted it yet.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from thrifty.migrations import Dialect, Migration
from thrifty.sqldb import SQLDatabase

__all__ = ["MIGRATIONS", "ResponseStore", "ResponsesSettings", "StoredResponse"]


class ResponsesSettings(BaseModel):
    """The `responses:` config section (stored Responses-API responses)."""

    model_config = ConfigDict(extra="forbid")

    #: Days a stored response can be retrieved or continued (OpenAI keeps them 30 days);
    #: null keeps them until deleted.
    ttl_days: float | None = Field(default=30.0, gt=0)
    #: Seconds between purges of expired rows.
    purge_interval: float = Field(default=3600.0, gt=0)

TABLE = "thrifty_responses"


def _create(dialect: Dialect) -> list[str]:
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created_at {real} NOT NULL, "
        "model TEXT NOT NULL, previous_response_id TEXT, response TEXT NOT NULL, input_items TEXT NOT NULL, "
        "history TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_created ON {TABLE} (created_at)",
    ]


MIGRATIONS = [Migration("responses_0001_create", _create)]


@dataclass(frozen=True)
class StoredResponse:
    id: str
    tenant: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    history: list[dict[str, Any]]

    def conversation(self) -> list[dict[str, Any]]:
        """Every item of the conversation up to and including this response's output."""
        return [*self.history, *self.input_items, *(self.response.get("output") or [])]


class ResponseStore:
    """Responses by id and tenant. Methods block; the `a*` variants run them in a thread."""

    def __init__(self, url: str, ttl_days: float | None = None) -> None:
        self.db = SQLDatabase(url, "responses", MIGRATIONS)
        self.dialect = self.db.dialect
        self._run = self.db.run
        self.ttl = ttl_days * 86400 if ttl_days is not None else None

    def _cutoff(self) -> float:
        """Rows created before this time have expired."""
        return time.time() - self.ttl if self.ttl is not None else 0.0

    def put(self, tenant: str, response: dict[str, Any], input_items: list[dict[str, Any]],
            history: list[dict[str, Any]]) -> None:
        """Store (or replace) `response`, committed before this returns."""
        row = (response["id"], tenant, time.time(), str(response.get("model", "")),
               response.get("previous_response_id"), orjson.dumps(response).decode(),
               orjson.dumps(input_items).decode(), orjson.dumps(history).decode())
        conflict = ("INSERT OR REPLACE INTO" if self.dialect == "sqlite" else "INSERT INTO")
        tail = "" if self.dialect == "sqlite" else (
            " ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant, response = EXCLUDED.response, "
            "input_items = EXCLUDED.input_items, history = EXCLUDED.history")
        self._run(f"{conflict} {TABLE} (id, tenant, created_at, model, previous_response_id, response, "
                  f"input_items, history) VALUES (?, ?, ?, ?, ?, ?, ?, ?){tail}", row)

    def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        rows = self._run(f"SELECT response, input_items, history FROM {TABLE} WHERE id = ? AND tenant = ? "
                         "AND created_at >= ?", (response_id, tenant, self._cutoff()))
        if not rows:
            return None
        response, items, history = rows[0]
        return StoredResponse(response_id, tenant, orjson.loads(response), orjson.loads(items), orjson.loads(history))

    def delete(self, tenant: str, response_id: str) -> bool:
        """Delete a response; False when the tenant has none of that id."""
        found = self._run(f"SELECT 1 FROM {TABLE} WHERE id = ? AND tenant = ? AND created_at >= ?",
                          (response_id, tenant, self._cutoff()))
        if found:
            self._run(f"DELETE FROM {TABLE} WHERE id = ? AND tenant = ?", (response_id, tenant))
        return bool(found)

    def purge(self) -> int:
        """Delete the expired rows; how many there were."""
        if self.ttl is None:
            return 0
        return self.db.changed(f"DELETE FROM {TABLE} WHERE created_at < ?", (self._cutoff(),))

    def close(self) -> None:
        self.db.close()

    async def aput(self, tenant: str, response: dict[str, Any], input_items: list[dict[str, Any]],
                   history: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.put, tenant, response, input_items, history)

    async def aget(self, tenant: str, response_id: str) -> StoredResponse | None:
        return await asyncio.to_thread(self.get, tenant, response_id)

    async def adelete(self, tenant: str, response_id: str) -> bool:
        return await asyncio.to_thread(self.delete, tenant, response_id)

    async def apurge(self) -> int:
        return await asyncio.to_thread(self.purge)
