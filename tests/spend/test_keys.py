"""Virtual keys through the admin API: material once, hash stored, 401 without saying why."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import aiohttp

from tests.conftest import StartGateway
from tests.spend.helpers import ADMIN_HEADERS, chat, clear_of_window_edge, create_key, spend_config, start
from thrifty.testing.mock_upstream import MockUpstream


async def test_a_key_works_once_created_and_only_its_hash_is_stored(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="alice", team="search", tags={"feature": "qa"})
    material = made["key"]
    assert material.startswith("tk-") and made["id"] in material
    status, body, _ = await chat(gw, material)
    assert status == 200, body
    rows = gw.rows()
    assert rows[-1]["key_name"] == "alice" and json.loads(rows[-1]["tags"])["feature"] == "qa"
    db = sqlite3.connect(tmp_path / "ledger.db")
    stored = db.execute("SELECT sha256, spec FROM spend_keys").fetchall()
    assert material not in str(stored) and len(stored[0][0]) == 64
    async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/v1/thrifty/keys", headers=ADMIN_HEADERS) as r:
        listed = await r.json()
    assert "key" not in listed["data"][0] and "sha256" not in listed["data"][0]


async def test_unknown_revoked_and_expired_keys_get_the_same_401(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    revoked = await create_key(gw, name="gone")
    expiring = await create_key(gw, name="brief", expires="1m")
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/thrifty/keys/gone/revoke", headers=ADMIN_HEADERS) as r:
        assert r.status == 200 and (await r.json())["status"] == "revoked"
    spend = gw.gateway.services.spend
    assert spend is not None
    spend._keys[expiring["id"]].expires_at = 1.0  # expired (the clock, not the test, would take a minute)
    forged = revoked["key"][:-4] + "AAAA"
    answers = [await chat(gw, k) for k in (revoked["key"], expiring["key"], forged, "tk-000000000000-" + "x" * 40)]
    assert [a[0] for a in answers] == [401, 401, 401, 401]
    assert len({a[1]["error"]["message"] for a in answers}) == 1
    assert answers[0][1]["error"]["code"] == "invalid_api_key"


async def test_rotation_replaces_the_material_and_keeps_the_key(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="bob")
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/thrifty/keys/{made['id']}/rotate",
                                                   headers=ADMIN_HEADERS) as r:
        rotated = await r.json()
    assert rotated["id"] == made["id"] and rotated["key"] != made["key"]
    assert (await chat(gw, made["key"]))[0] == 401
    assert (await chat(gw, rotated["key"]))[0] == 200


async def test_nonsense_is_refused_at_creation_naming_the_field(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    cases = {
        "budgets.0.usd": {"name": "a", "budgets": [{"usd": -1, "window": "day"}]},
        "budgets.0.window": {"name": "b", "budgets": [{"usd": 1, "window": "0h"}]},
        "limits.rpm": {"name": "c", "limits": {"rpm": 0}},
        "models.0": {"name": "d", "models": ["no-such-model"]},
        "aliases.0": {"name": "e", "aliases": ["auto"]},  # no route lever configured: nothing resolves it
        "expires": {"name": "f", "expires": "2001-01-01"},
    }
    async with aiohttp.ClientSession() as s:
        for field, spec in cases.items():
            async with s.post(f"{gw.url}/v1/thrifty/keys", json=spec, headers=ADMIN_HEADERS) as r:
                body = await r.json()
                assert r.status == 400, (field, body)
                assert body["error"]["param"] == field, body
                assert body["error"]["message"].startswith(field.split(".")[0].rstrip("0123456789")), body


async def test_admin_routes_refuse_virtual_and_non_admin_keys(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="carol")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.url}/v1/thrifty/keys", headers={"Authorization": f"Bearer {made['key']}"}) as r:
            assert r.status == 401
        async with s.get(f"{gw.url}/v1/thrifty/keys") as r:
            assert r.status == 401


async def test_allowed_models_and_routes(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="dave", models=["claude-test"], routes=["search"])
    status, body, _ = await chat(gw, made["key"])
    assert status == 403 and "gpt-test" in body["error"]["message"]
    other = await create_key(gw, name="erin", models=["gpt-test"], routes=["search"])
    status, body, _ = await chat(gw, other["key"])
    assert status == 403 and "route" in body["error"]["message"]
    status, _, _ = await chat(gw, other["key"], metadata={"route": "search"})
    assert status == 200


async def test_static_config_keys_keep_working(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    from tests.spend.helpers import ADMIN

    assert (await chat(gw, ADMIN))[0] == 200
    assert (await chat(gw, "not-a-key"))[0] == 401


async def test_a_key_created_on_one_replica_works_on_another_at_once(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    slow = spend_config(upstream, tmp_path).replace("keys_refresh: 0.2", "keys_refresh: 600")
    one, two = await start_gateway(slow), await start_gateway(slow)
    made = await create_key(one, name="frank")
    # `two` reloads its keys only every 10 minutes: it looks a new key id up in the store
    assert (await chat(two, made["key"]))[0] == 200
    made_id = made["id"]
    made_up = made["key"].replace(made_id, "0" * len(made_id))
    assert (await chat(two, made_up))[0] == 401  # an id the store does not know
    spend = two.gateway.services.spend
    assert spend is not None and spend._missing  # remembered: not looked up again at once


async def test_anthropic_clients_get_refusals_in_their_own_shape(
        upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start(start_gateway, upstream, tmp_path)
    made = await create_key(gw, name="claude-user", limits={"rpm": 1})
    await clear_of_window_edge()
    body = {"model": "claude-test", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    answers = []
    async with aiohttp.ClientSession() as s:
        for key in (made["key"], made["key"], "tk-000000000000-" + "y" * 43):
            async with s.post(f"{gw.url}/v1/messages", json=body, headers={"x-api-key": key}) as r:
                answers.append((r.status, await r.json(), r.headers.get("Retry-After")))
    assert [a[0] for a in answers] == [200, 429, 401]
    for _status, payload, _retry in answers[1:]:
        assert payload["type"] == "error" and payload["error"]["type"] in ("rate_limit_error", "authentication_error")
    assert answers[1][2] is not None
