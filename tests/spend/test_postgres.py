"""Keys, teams and alert claims on PostgreSQL (the machine's shared server; rows are this test's own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartGateway
from tests.spend.helpers import chat, create_key, spend_config
from tests.spend.test_budgets import budgets
from thrifty.spend.keys import KeySpec, KeyStore, TeamSpec
from thrifty.testing.mock_upstream import MockUpstream

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _pg(), reason="no PostgreSQL on 127.0.0.1:5432")


@pytest.fixture
def tag() -> Iterator[str]:
    t = uuid.uuid4().hex[:10]
    yield t
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("DELETE FROM spend_keys WHERE name LIKE %s", (f"%{t}%",))
        conn.execute("DELETE FROM spend_teams WHERE name LIKE %s", (f"%{t}%",))
        conn.execute("DELETE FROM spend_alerts WHERE scope LIKE %s", (f"%{t}%",))
        conn.execute("DELETE FROM requests WHERE key_name LIKE %s", (f"%{t}%",))


def test_keys_teams_and_one_alert_claim_across_replicas(tag: str) -> None:
    one, two = KeyStore(PG_URL), KeyStore(PG_URL)
    try:
        key, material = one.create_key(KeySpec.model_validate({"name": f"pg-{tag}", "budgets": [{"usd": 3, "window": "day"}]}))
        seen = two.key(f"pg-{tag}")
        assert seen is not None and seen.key_id == key.key_id and seen.matches(material)
        assert seen.budgets[0].usd == 3
        two.put_team(TeamSpec.model_validate({"name": f"team-{tag}", "limits": {"rpm": 5}}))
        team = one.team(f"team-{tag}")
        assert team is not None and team.limits.rpm == 5
        claims = [s.claim_alert(f"key:{tag} budget day", 1.0, 0.5) for s in (one, two, one)]
        assert claims == [True, False, False]
        one.revoke(key.key_id)
        assert two.key(key.key_id).revoked_at is not None  # type: ignore[union-attr]
    finally:
        one.close()
        two.close()


async def test_a_gateway_on_postgresql_enforces_and_rebuilds(
        tag: str, upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    config = spend_config(upstream, tmp_path, store=PG_URL)
    gw = await start_gateway(config)
    made = await create_key(gw, name=f"pg-{tag}", budgets=[{"usd": "0.00002", "window": "day"}])
    statuses = []
    for i in range(10):
        statuses.append((await chat(gw, made["key"], f"pg {i}", max_tokens=5))[0])
        await gw.gateway.services.spend.drain()  # type: ignore[union-attr]
    assert statuses[0] == 200 and 429 in statuses
    before = await budgets(gw)
    assert gw.gateway.ledger is not None
    gw.gateway.ledger.flush()
    await gw.runner.cleanup()
    again = await start_gateway(config)
    after = await budgets(again)
    mine = [r for r in after if r.get("key") == f"pg-{tag}"]
    assert mine and mine[0]["used"] == [r for r in before if r.get("key") == f"pg-{tag}"][0]["used"] > 0
