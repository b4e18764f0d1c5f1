"""The token levers inside a running thrifty, in front of the mock upstream, per route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream

from .test_context import PASSAGES

LEVERS = """
compress:
  enabled: false
cap:
  enabled: false
routes:
  rag:
    compress:
      enabled: true
      context: {enabled: true, ratio: 0.25, min_tokens: 100}
    cap:
      enabled: true
      max_tokens: 64
  docs:
    canonicalize:
      cache_control: true
"""

QUESTION = "Question: How tall is the Eiffel Tower?"


async def post(
    gw: RunningGateway, path: str, body: dict[str, Any], tags: str | None = None
) -> dict[str, Any]:
    headers = {"X-Thrifty-Tags": tags} if tags else {}
    async with aiohttp.ClientSession() as s, s.post(gw.url + path, json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def test_rag_route_compresses_and_the_ledger_proves_it(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, LEVERS))
    prompt = "\n\n".join(PASSAGES) + "\n\n" + QUESTION
    body = {"model": "gpt-test", "max_tokens": 500, "messages": [{"role": "user", "content": prompt}]}
    await post(gw, "/v1/chat/completions", body, tags="route=rag")
    sent = upstream.bodies[-1]
    text = sent["messages"][0]["content"]
    assert text.endswith("\n\n" + QUESTION) and "330 metres" in text
    assert len(text) < 0.4 * len(prompt)
    assert sent["max_tokens"] == 64
    [row] = gw.rows()
    savings = json.loads(row["savings"])
    tokens = json.loads(row["tokens_saved"])
    assert tokens["compress.context"] > 300 and float(savings["compress.context"]) > 0
    assert row["counterfactual_pico"] > row["cost_pico"]
    assert json.loads(row["extra"])["capped"] is True


async def test_route_with_compression_off_reaches_upstream_unchanged(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, LEVERS))
    body = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Answer   briefly.\n\n\n\nAnswer   briefly."},
            {"role": "user", "content": "\n\n".join(PASSAGES) + "\n\n" + QUESTION},
        ],
        "temperature": 0.2,
        # canonicalize (on by default) only sorts schema keys; these already are.
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"properties": {}, "type": "object"}},
            }
        ],
    }
    await post(gw, "/v1/chat/completions", body, tags="route=chat")
    sent = dict(upstream.bodies[-1])
    assert sent.pop("model") == "gpt-4o-mini"
    expected = {k: v for k, v in body.items() if k != "model"}
    assert json.dumps(sent) == json.dumps(expected)
    [row] = gw.rows()
    assert json.loads(row["savings"]) == {}


async def test_anthropic_breakpoints_and_priced_cache_reads(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path, LEVERS))
    system = "You answer from the handbook.\n\n" + "\n\n".join(PASSAGES * 3)
    body = {"model": "claude-test", "max_tokens": 50, "system": system,
            "messages": [{"role": "user", "content": "[cached 2000] What is the Great Wall?"}]}  # fmt: skip
    await post(gw, "/v1/messages", body, tags="route=docs")
    assert upstream.bodies[-1]["system"] == [
        {"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}
    ]
    await post(gw, "/v1/messages", body, tags="route=other")
    assert upstream.bodies[-1]["system"] == system
    rows = {r["route"]: r for r in gw.rows()}
    # 2,000 tokens read at $0.30/M instead of $3/M.
    assert json.loads(rows["docs"]["savings"])["canonicalize"] == "0.0054"
    assert json.loads(rows["other"]["savings"]) == {}


async def test_history_summary_is_a_side_call_on_the_ledger_row(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    config = """
compress:
  enabled: true
  trim: {enabled: false}
  history: {enabled: true, model: gpt-test, keep_turns: 1, budget_tokens: 50}
"""
    gw = await start_gateway(mock_config(upstream, tmp_path, config))
    messages: list[dict[str, Any]] = []
    for i in range(3):
        messages += [
            {"role": "user", "content": f"Tell me about topic {i}. " * 10},
            {"role": "assistant", "content": f"Topic {i} is broad. " * 10},
        ]
    messages.append({"role": "user", "content": "Thanks, and now?"})
    await post(gw, "/v1/chat/completions", {"model": "gpt-test", "messages": messages})
    # The mock answers "echo: <transcript>", a "summary" longer than what it replaces, so
    # the stage keeps the history as it was - but the side call was made and is paid for.
    summary_call, main_call = upstream.bodies[-2:]
    assert (
        summary_call["messages"][0]["role"] == "system"
        and "Topic 0" in summary_call["messages"][1]["content"]
    )
    assert main_call["messages"] == messages
    [row] = gw.rows()
    assert json.loads(row["savings"]) == {}
    assert row["cost_pico"] > 0
