"""Claude Code (`claude -p`, streaming Anthropic Messages) through a cascade with a judge tier.

The route asks a cheap model first (`stream: buffer`, so Claude Code's streamed requests go
through the cascade too), a judge grades each cheap answer, and the answer it passes is
replayed to Claude Code as a Messages stream: first a tool call, which Claude Code runs, then
the final text. The strong model is never asked; each ledger row carries the cheap answer and
the judge's call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clients.cli import claude_print
from tests.conftest import StartGateway, mock_config
from thrifty.testing.mock_upstream import MockUpstream


@pytest.mark.slow
async def test_claude_code_through_a_judged_cascade(
    claude_bin: Path, upstream: MockUpstream, start_gateway: StartGateway, tmp_path: Path
) -> None:
    extra = f"""  - {{name: claude-cheap, provider: anthropic, model: claude-haiku-4-5, base_url: "{upstream.base_url}",
      price: {{input: 1, output: 5}}, retry_backoff: 0.01}}
  - {{name: judge, provider: openai, model: gpt-4o-mini, base_url: "{upstream.base_url}/v1",
      price: {{input: 0.15, output: 0.60}}, retry_backoff: 0.01}}
route:
  default: claude-test
  cascade: {{tiers: [claude-cheap, claude-test], judge: {{model: judge}}, stream: buffer}}
"""
    thrifty = await start_gateway(mock_config(upstream, tmp_path, extra))
    # Each chat request takes the next step: the cheap model's turn, then the judge's grade.
    upstream.script = [
        {"tool": "Bash", "arguments": {"command": "echo hello-from-the-cheap-tier", "description": "Print"}},
        {"text": "The call runs the command the user asked for.\nScore: 9"},
        {"text": "It printed hello-from-the-cheap-tier."},
        {"text": "It reports the output correctly.\nScore: 9"},
    ]
    rc, out, err = await claude_print(claude_bin, thrifty.url, "claude-test", "Run echo and tell me what it printed",
                                      tmp_path)
    assert rc == 0, (out + err)[-3000:]
    assert "It printed hello-from-the-cheap-tier." in out
    assert not upstream.script
    # Claude Code streamed; the cascade asked the cheap model for whole answers.
    cheap, grade1, _, grade2 = upstream.bodies
    assert cheap["model"] == "claude-haiku-4-5" and not cheap.get("stream")
    assert '[tool call] Bash({"command": "echo hello-from-the-cheap-tier"' in grade1["messages"][-1]["content"]
    assert "It printed hello-from-the-cheap-tier." in grade2["messages"][-1]["content"]
    rows = thrifty.rows()
    assert len(rows) == 2 and all(r["outcome"] == "ok" and r["served_model"] == "claude-cheap" for r in rows)
    for r in rows:
        extra_row = r["extra"] if isinstance(r["extra"], dict) else json.loads(r["extra"])
        assert extra_row["route"]["cascade"]["judge"]["score"] == 9.0
