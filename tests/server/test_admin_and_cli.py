"""The spend report (CLI and HTTP), token counting, tags, the serve command's safety checks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
from click.testing import CliRunner

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.cli import main
from thrifty.testing.mock_upstream import MockUpstream


async def test_tags_from_header_and_metadata_reach_the_ledger(thrifty: RunningGateway) -> None:
    oa = openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="x", max_retries=0)
    await oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "a"}],
                                     extra_headers={"X-Thrifty-Tags": "route=search,feature=summary", "X-Thrifty-Task": "t-1"})
    await oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "b"}],
                                     metadata={"route": "chat"})
    rows = thrifty.rows()
    assert (rows[0]["route"], rows[0]["feature"], rows[0]["task"]) == ("search", "summary", "t-1")
    assert rows[1]["route"] == "chat"


async def test_spend_endpoint_and_cli(thrifty: RunningGateway, tmp_path: Path) -> None:
    oa = openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="x", max_retries=0)
    for route in ("a", "a", "b"):
        await oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                         extra_headers={"X-Thrifty-Tags": f"route={route}"})
    async with httpx.AsyncClient() as http:
        r = await http.get(thrifty.url + "/v1/thrifty/spend", params={"by": "route", "since": "1h"})
        bad = await http.get(thrifty.url + "/v1/thrifty/spend", params={"since": "yesterday-ish"})
    body = r.json()
    assert [row["route"] for row in body["rows"]] == ["a", "b"]
    assert body["rows"][0]["requests"] == 2
    assert Decimal(body["total"]["cost"]) == 3 * (11 * Decimal("0.15") + 2 * Decimal("0.6")) / 1_000_000
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]
    result = CliRunner().invoke(main, ["spend", "--store", f"sqlite:///{tmp_path}/ledger.db", "--by", "route"])
    assert result.exit_code == 0, result.output
    assert "spend by route" in result.output and "without thrifty" in result.output


async def test_count_tokens_asks_anthropic_upstreams_and_estimates_otherwise(thrifty: RunningGateway, upstream: MockUpstream) -> None:
    client = anthropic.AsyncAnthropic(base_url=thrifty.url, api_key="x", max_retries=0)
    n = await client.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "hello"}])
    assert n.input_tokens > 0 and upstream.calls["count_tokens"] == 1
    est = await client.messages.count_tokens(model="gpt-test", messages=[{"role": "user", "content": "hello"}])
    assert est.input_tokens > 0 and upstream.calls["count_tokens"] == 1


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path, upstream_config: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(upstream_config)
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "refusing to listen on 0.0.0.0" in result.output


def test_serve_reports_config_errors_with_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models:\n  - name: x\n    provider: nope\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2 and "bad.yaml:3" in result.output


def test_help_teaches() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "serve" in result.output and "spend" in result.output


async def test_postgres_ledger_through_the_server(upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    cfg = mock_config(upstream, tmp_path).replace(f"store: sqlite:///{tmp_path}/ledger.db", f"store: {url}")
    # the spool of this test's own (the default one, under ~/.local/state, is per store)
    cfg = cfg.replace("ledger: {flush_interval: 0.05}", f"ledger: {{flush_interval: 0.05, spool_dir: '{tmp_path}/spool'}}")
    thrifty = await start_gateway(cfg)
    assert thrifty.gateway.ledger is not None
    thrifty.gateway.ledger.store.execute("DELETE FROM requests")
    oa = openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="x", max_retries=0)
    resp = await oa.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "pg"}])
    rid = resp.headers["X-Thrifty-Request-Id"]
    rows = [r for r in thrifty.rows() if r["request_id"] == rid]
    assert len(rows) == 1 and rows[0]["cost_pico"] == 2_850_000
