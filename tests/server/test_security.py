"""Security: where thrifty listens, how gateway keys are kept, who may read spend, and whose
request a ledger row is."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.cli import main
from thrifty.config import ConfigError, KeyConfig
from thrifty.server.auth import KeyRing, hash_key
from thrifty.server.cli import is_loopback
from thrifty.testing.mock_upstream import MockUpstream


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1", "0:0:0:0:0:0:0:1"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "[::1]", "::ffff:127.0.0.1", "localhost.example.com",
     "127.0.0.1.nip.io", " 127.0.0.1", "LOCALHOST.", "example.com"],
)
def test_anything_else_counts_as_public(host: str) -> None:
    # When in doubt, refuse: a name that only might be loopback needs keys like any other.
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "[::1]"])
def test_serve_refuses_public_addresses_without_keys(tmp_path: Path, upstream_config: str, host: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(upstream_config)
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--host", host])
    assert result.exit_code == 2 and f"refusing to listen on {host}" in result.output


def test_serve_refuses_a_public_host_from_the_config_file_too(tmp_path: Path, upstream_config: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(upstream_config + "server: {host: 0.0.0.0}\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2 and "refusing to listen on 0.0.0.0" in result.output


def test_keys_are_kept_only_as_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_KEY", "thr-live-secret-0001")
    ring = KeyRing([KeyConfig(name="team", key_env="TEAM_KEY"),
                    KeyConfig(name="ops", sha256=hash_key("thr-ops-0002"), admin=True)])
    assert "thr-live-secret-0001" not in repr(vars(ring)) and "thr-ops-0002" not in repr(vars(ring))
    assert ring.lookup("thr-live-secret-0001").name == "team"  # type: ignore[union-attr]
    assert ring.lookup("thr-ops-0002").admin  # type: ignore[union-attr]
    assert ring.lookup("thr-live-secret-000") is None and ring.lookup("") is None and ring.lookup(None) is None


def test_a_key_whose_variable_is_unset_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOPE_KEY"):
        KeyRing([KeyConfig(name="team", key_env="NOPE_KEY")])


@pytest.fixture
async def keyed(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> RunningGateway:
    extra = f"""
server:
  keys:
    - {{name: team-a, sha256: {hash_key('thr-a')}, tenant: acme}}
    - {{name: team-b, sha256: {hash_key('thr-b')}}}
    - {{name: ops, sha256: {hash_key('thr-admin')}, admin: true}}
"""
    return await start_gateway(mock_config(upstream, tmp_path, extra))


async def test_spend_is_refused_to_non_admin_keys(keyed: RunningGateway) -> None:
    url = keyed.url + "/v1/thrifty/spend"
    async with httpx.AsyncClient() as http:
        none = await http.get(url)
        wrong = await http.get(url, headers={"Authorization": "Bearer thr-nope"})
        team = await http.get(url, headers={"Authorization": "Bearer thr-a"})
        team_x = await http.get(url, headers={"x-api-key": "thr-b"})
        admin = await http.get(url, headers={"Authorization": "Bearer thr-admin"})
    assert (none.status_code, wrong.status_code, team.status_code, team_x.status_code) == (401, 401, 403, 403)
    assert "admin key" in team.json()["error"]["message"] and team.json()["error"]["type"] == "permission_error"
    assert admin.status_code == 200 and "rows" in admin.json()


async def test_every_route_but_health_needs_a_key(keyed: RunningGateway) -> None:
    body = {"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient() as http:
        assert (await http.get(keyed.url + "/healthz")).status_code == 200
        assert (await http.get(keyed.url + "/v1/models")).status_code == 401
        chat = await http.post(keyed.url + "/v1/chat/completions", json=body)
        messages = await http.post(keyed.url + "/v1/messages", json=body)
        count = await http.post(keyed.url + "/v1/messages/count_tokens", json=body)
    assert chat.status_code == 401 and chat.json()["error"]["code"] == "invalid_api_key"
    assert messages.status_code == 401 and messages.json()["error"]["type"] == "authentication_error"
    assert count.status_code == 401
    assert keyed.rows() == []  # refused before the pipeline: nothing billed


async def test_the_tenant_comes_from_the_key_not_from_the_request(keyed: RunningGateway, upstream: MockUpstream) -> None:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "metadata": {"tenant": "evil"}}
    async with httpx.AsyncClient() as http:
        for key in ("thr-a", "thr-b"):
            r = await http.post(keyed.url + "/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {key}", "X-Thrifty-Tags": "tenant=evil"})
            assert r.status_code == 200
    rows = keyed.rows()
    assert [(r["key_name"], r["tenant"]) for r in rows] == [("team-a", "acme"), ("team-b", "team-b")]
    # The gateway key never travels upstream, nor into the ledger.
    assert all("thr-a" not in json.dumps(h) and "thr-b" not in json.dumps(h) for h in upstream.headers)
    assert "thr-a" not in json.dumps(rows) and "thr-b" not in json.dumps(rows)
