"""Claude Code (`claude -p`, which speaks Anthropic Messages) finishes a scripted turn through
thrifty: it runs its Bash tool, sends the output back, and answers; against an
OpenAI-protocol upstream (translated both ways, streamed) and an Anthropic one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clients.cli import claude_print
from tests.conftest import RunningGateway
from thrifty.testing.mock_upstream import MockUpstream


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_claude_code_runs_a_tool_and_answers_through_thrifty(
    claude_bin: Path, thrifty: RunningGateway, upstream: MockUpstream, tmp_path: Path, model: str
) -> None:
    upstream.script = [{"tool": "Bash", "arguments": {"command": "echo hello-from-claude-tool", "description": "Print"}},
                       {"text": "It printed hello-from-claude-tool."}]
    rc, out, err = await claude_print(claude_bin, thrifty.url, model, "Run echo and tell me what it printed", tmp_path)
    assert rc == 0, (out + err)[-3000:]
    assert "It printed hello-from-claude-tool." in out
    assert len(upstream.bodies) == 2 and not upstream.script
    second = upstream.bodies[1]
    if model == "gpt-test":
        [result] = [m for m in second["messages"] if m["role"] == "tool"]
        assert result["tool_call_id"] == "call_mock1" and "hello-from-claude-tool" in result["content"]
        assert second["stream"] is True and [m["role"] for m in second["messages"]][-2:] == ["assistant", "tool"]
    else:
        blocks = [b for m in second["messages"] if isinstance(m["content"], list) for b in m["content"]]
        [result] = [b for b in blocks if b.get("type") == "tool_result"]
        assert result["tool_use_id"] == "toolu_mock1" and "hello-from-claude-tool" in json.dumps(result["content"])
    rows = thrifty.rows()
    assert len(rows) == 2 and all(r["outcome"] == "ok" and r["protocol"] == "anthropic" for r in rows)
