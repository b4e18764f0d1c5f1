"""Codex CLI (`codex exec`, which speaks only the Responses API) finishes a scripted turn
through thrifty: it calls its shell tool, runs the command, sends the output back, and
answers; against an Anthropic-protocol and an OpenAI-protocol upstream.

Codex's default tool set also holds a `namespace` of sub-agent tools and OpenAI's hosted
`web_search`, which no other provider can run; thrifty refuses those with a 400 that names
them, so the runs against translated models switch them off (`--disable multi_agent`,
`web_search="disabled"`), as a user pointing Codex at a non-OpenAI model through thrifty
would. Towards a model that serves the Responses API itself, Codex runs with its defaults:
thrifty passes its request through as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.clients.cli import run_cli
from tests.conftest import RunningGateway, StartGateway, mock_config
from thrifty.protocol.view import content_text
from thrifty.testing.mock_upstream import MockUpstream


async def codex_exec(codex: Path, gw: RunningGateway, model: str, prompt: str, cwd: Path,
                     defaults: bool = False) -> tuple[int, str, str]:
    home = cwd / "codex-home"
    home.mkdir()
    env = {**os.environ, "CODEX_HOME": str(home), "THRIFTY_KEY": "unused"}
    args = [str(codex), "exec", "--skip-git-repo-check", "-m", model,
            "-c", 'model_provider="thrifty"', "-c", 'model_providers.thrifty.name="thrifty"',
            "-c", f'model_providers.thrifty.base_url="{gw.url}/v1"',
            "-c", 'model_providers.thrifty.wire_api="responses"',
            "-c", 'model_providers.thrifty.env_key="THRIFTY_KEY"',
            *([] if defaults else ["--disable", "multi_agent", "-c", 'web_search="disabled"']), prompt]
    return await run_cli(args, env, cwd)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
async def test_codex_runs_a_tool_and_answers_through_thrifty(
    codex_bin: Path, thrifty: RunningGateway, upstream: MockUpstream, tmp_path: Path, model: str
) -> None:
    upstream.script = [{"tool": "exec_command", "arguments": {"cmd": "echo hello-from-the-tool"}},
                       {"text": "The command printed hello-from-the-tool."}]
    rc, out, err = await codex_exec(codex_bin, thrifty, model, "Run echo and tell me what it printed", tmp_path)
    assert rc == 0, err[-3000:]
    assert "The command printed hello-from-the-tool." in out
    assert len(upstream.bodies) == 2 and not upstream.script
    second = upstream.bodies[1]
    if model == "claude-test":  # the command's output came back as a tool_result for the tool_use
        [result] = [b for m in second["messages"] if isinstance(m["content"], list)
                    for b in m["content"] if b.get("type") == "tool_result"]
        assert result["tool_use_id"] == "toolu_mock1" and "hello-from-the-tool" in json.dumps(result["content"])
    else:
        [result] = [m for m in second["messages"] if m["role"] == "tool"]
        assert result["tool_call_id"] == "call_mock1" and "hello-from-the-tool" in result["content"]
    rows = thrifty.rows()
    assert len(rows) == 2 and all(r["outcome"] == "ok" and r["stream"] for r in rows)
    assert all(json.loads(r["extra"])["endpoint"] == "responses" for r in rows)


@pytest.mark.slow
async def test_codex_with_its_defaults_through_a_pass_through(
    codex_bin: Path, upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    """Towards a model served natively, Codex's own request (hosted web_search, its tool
    namespace, `store: false`, encrypted reasoning) reaches the upstream as Codex sent it."""
    native = f"""  - name: gpt-native
    provider: openai
    model: gpt-5-mock
    base_url: {upstream.base_url}/v1
    options: {{responses: native}}
    price: {{input: 1.25, output: 10}}
"""
    gw = await start_gateway(mock_config(upstream, tmp_path).replace("models:\n", "models:\n" + native, 1))
    upstream.script = [{"tool": "exec_command", "arguments": {"cmd": "echo hello-from-the-tool"}},
                       {"text": "The command printed hello-from-the-tool."}]
    workdir = tmp_path / "work"
    workdir.mkdir()
    rc, out, err = await codex_exec(codex_bin, gw, "gpt-native", "Run echo and tell me what it printed", workdir,
                                    defaults=True)
    assert rc == 0, err[-3000:]
    assert "The command printed hello-from-the-tool." in out
    assert upstream.calls["responses"] == 2 and upstream.calls["openai"] == 0 and not upstream.script
    first, second = upstream.bodies
    assert any(t.get("type") == "web_search" for t in first["tools"])  # the hosted tool, passed through
    assert first["store"] is False and "reasoning.encrypted_content" in first["include"]
    [result] = [i for i in second["input"] if i.get("type") == "function_call_output"]
    assert result["call_id"] == "call_mock1" and "hello-from-the-tool" in json.dumps(result["output"])
    rows = gw.rows()
    assert len(rows) == 2 and all(r["outcome"] == "ok" and r["stream"] for r in rows)
    assert all(json.loads(r["extra"]).get("responses") == "native" for r in rows)


@pytest.mark.slow
async def test_codex_through_a_judged_cascade(
    codex_bin: Path, upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    """Codex streams Responses; a buffered cascade asks the cheap model for whole chat answers,
    a judge grades each (the tool call too), and the passed answer reaches Codex as Responses
    events: the shell call it runs, then the final text. The strong model is never asked."""
    extra = f"""  - {{name: gpt-cheap, provider: openai, model: gpt-4.1-nano, base_url: "{upstream.base_url}/v1",
      price: {{input: 0.1, output: 0.4}}, retry_backoff: 0.01}}
route:
  default: gpt-test
  cascade: {{tiers: [gpt-cheap, gpt-test], judge: {{model: claude-test}}, stream: buffer}}
"""
    gw = await start_gateway(mock_config(upstream, tmp_path, extra))
    upstream.script = [{"tool": "exec_command", "arguments": {"cmd": "echo hello-from-the-cheap-tier"}},
                       {"text": "The call runs what was asked.\nScore: 9"},
                       {"text": "The command printed hello-from-the-cheap-tier."},
                       {"text": "Right.\nScore: 10"}]
    rc, out, err = await codex_exec(codex_bin, gw, "gpt-test", "Run echo and tell me what it printed", tmp_path)
    assert rc == 0, err[-3000:]
    assert "The command printed hello-from-the-cheap-tier." in out and not upstream.script
    cheap, grade1, cheap2, _ = upstream.bodies
    assert cheap["model"] == cheap2["model"] == "gpt-4.1-nano" and not cheap.get("stream")
    graded = content_text(grade1["messages"][-1]["content"])  # the judge (an Anthropic model here) saw the call
    assert graded.endswith('[tool call] exec_command({"cmd": "echo hello-from-the-cheap-tier"})')
    [result] = [m for m in cheap2["messages"] if m["role"] == "tool"]  # Codex ran the call and sent its output
    assert "hello-from-the-cheap-tier" in result["content"]
    rows = gw.rows()
    assert len(rows) == 2 and all(r["outcome"] == "ok" and r["served_model"] == "gpt-cheap" for r in rows)
    assert [json.loads(r["extra"])["route"]["cascade"]["judge"]["score"] for r in rows] == [9.0, 10.0]
