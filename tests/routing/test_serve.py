"""The route stage inside the real server: HTTP in, replayed answers out, one ledger row each."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import aiohttp

from tests.conftest import serving
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.routing.datasets import convert_routerbench
from thrifty.routing.labeled import write_labeled
from thrifty.server.app import create_app

CHEAP, STRONG = "gpt-3.5-turbo-1106", "gpt-4-1106-preview"
PICO = Decimal(10) ** 12


async def test_served_costs_land_in_the_ledger(routing_data: Path, tmp_path: Path) -> None:
    examples = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv").examples[:6]
    write_labeled(examples, tmp_path / "d.jsonl")
    text = f"""
store: "sqlite:///{tmp_path / "ledger.db"}"
models:
  - {{name: {CHEAP}, provider: replay, options: {{dataset: "{tmp_path / "d.jsonl"}"}}}}
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{tmp_path / "d.jsonl"}"}}}}
route:
  default: {STRONG}
  apply_to: aliases
  tiers: {{cheap: {CHEAP}}}
  rules:
    - {{name: asks-for-a-function, when: {{requested: [auto], keywords: [function]}}, model: tier:cheap}}
"""
    gw = Gateway(parse_config(text, source="thrifty.yaml"))
    asked = ["auto", "tier:cheap", STRONG, "auto", "tier:cheap", STRONG]
    served: list[str] = []
    async with serving(create_app(gw)) as port, aiohttp.ClientSession() as http:
        for ex, model in zip(examples, asked, strict=True):
            body = {"model": model, "messages": [{"role": "user", "content": ex.text}]}
            async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
                data = await r.json()
                assert r.status == 200, data
                served.append(data["model"])
                assert data["choices"][0]["message"]["content"] == ex.candidates[data["model"]].response
        body = {"model": "tier:nope", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
            assert r.status == 404  # not an alias any route defines: the server refuses it
    expect = []
    for ex, m in zip(examples, asked, strict=True):
        if (
            m == "auto"
        ):  # the rule sends "... function ..." prompts to the cheap tier, the rest to the default
            expect.append(CHEAP if "function" in ex.text.lower() else STRONG)
        else:
            expect.append(CHEAP if m == "tier:cheap" else m)
    assert served == expect and CHEAP in served
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        rows = db.execute(
            "SELECT requested_model, served_model, cost_pico, counterfactual_pico FROM requests ORDER BY ts"
        ).fetchall()
    assert [r[0] for r in rows] == asked and [r[1] for r in rows] == served
    for (_, model, cost, counterfactual), ex in zip(rows, examples, strict=True):
        # The ledger keeps integer picodollars; the recordings carry float noise past 1e-12.
        assert Decimal(cost) / PICO == ex.candidates[model].cost.quantize(Decimal("1e-12"))
        # Without the router the request would have gone to GPT-4 (asked for, or the route's default).
        assert Decimal(counterfactual) / PICO == ex.candidates[STRONG].cost.quantize(Decimal("1e-12"))
