"""Stored responses expire after `responses.ttl_days` (OpenAI keeps them 30 days): an
expired one is not found at once, and the purge deletes its row, in SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartGateway, mock_config
from thrifty.config import lever_model, parse_config
from thrifty.errors import ConfigError
from thrifty.server.response_store import TABLE, ResponsesSettings, ResponseStore
from thrifty.testing.mock_upstream import MockUpstream

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _response(response_id: str) -> dict[str, object]:
    return {"id": response_id, "object": "response", "model": "m", "output": []}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_expired_response_is_not_found_and_purged(backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db" if backend == "sqlite" else PG_URL
    store = ResponseStore(url, ttl_days=30)
    old, fresh = f"resp_old{secrets.token_hex(6)}", f"resp_new{secrets.token_hex(6)}"
    try:
        store.put("acme", _response(old), [], [])
        store.put("acme", _response(fresh), [], [])
        store.db.run(f"UPDATE {TABLE} SET created_at = ? WHERE id = ?", (time.time() - 31 * 86400, old))
        assert store.get("acme", old) is None  # expired: gone for readers before any purge
        assert not store.delete("acme", old)
        assert store.get("acme", fresh) is not None
        assert store.purge() >= 1
        assert store.db.run(f"SELECT id FROM {TABLE} WHERE id IN (?, ?)", (old, fresh)) == [(fresh,)]
        assert store.purge() == 0 or backend == "postgresql"  # another test may share the database
    finally:
        store.db.run(f"DELETE FROM {TABLE} WHERE id IN (?, ?)", (old, fresh))
        store.close()


def test_no_ttl_keeps_responses(tmp_path: Path) -> None:
    store = ResponseStore(f"sqlite:///{tmp_path}/store.db", ttl_days=None)
    store.put("acme", _response("resp_kept"), [], [])
    store.db.run(f"UPDATE {TABLE} SET created_at = 1.0")
    assert store.get("acme", "resp_kept") is not None and store.purge() == 0
    store.close()


def test_the_setting_is_checked(tmp_path: Path) -> None:
    base = f"store: sqlite:///{tmp_path}/l.db\nmodels: []\n"
    assert lever_model(parse_config(base), "responses", ResponsesSettings).ttl_days == 30
    assert lever_model(parse_config(base + "responses: {ttl_days: null}\n"), "responses",
                       ResponsesSettings).ttl_days is None
    with pytest.raises(ConfigError, match="ttl_days"):
        lever_model(parse_config(base + "responses: {ttl_days: -1}\n"), "responses", ResponsesSettings)


async def test_the_server_purges_at_start_and_forgets_expired_ids(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    store = ResponseStore(f"sqlite:///{tmp_path}/ledger.db", ttl_days=1)
    store.put("default", _response("resp_ancient"), [], [])
    store.db.run(f"UPDATE {TABLE} SET created_at = ?", (time.time() - 2 * 86400,))
    store.close()
    gw = await start_gateway(mock_config(upstream, tmp_path, "responses: {ttl_days: 1}\n"))
    async with httpx.AsyncClient() as http:
        r = await http.post(gw.url + "/v1/responses", json={"model": "gpt-test", "input": "hi",
                                                            "previous_response_id": "resp_ancient"})
        assert r.status_code == 404
    check = ResponseStore(f"sqlite:///{tmp_path}/ledger.db")
    try:
        for _ in range(50):  # the purge at start runs beside the first requests
            if not check.db.run(f"SELECT id FROM {TABLE} WHERE id = 'resp_ancient'"):
                break
            await asyncio.sleep(0.02)
        assert check.db.run(f"SELECT id FROM {TABLE} WHERE id = 'resp_ancient'") == []
    finally:
        check.close()
