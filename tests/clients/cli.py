"""Running the agent CLIs under test: one subprocess, killed if it outlives its time."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


async def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """Run `args` with no stdin; (exit status, stdout, stderr), the process killed after `timeout` s."""
    proc = await asyncio.create_subprocess_exec(*args, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def claude_print(claude: Path, base_url: str, model: str, prompt: str, cwd: Path,
                       allowed: str = "Bash(echo:*)") -> tuple[int, str, str]:
    """`claude -p PROMPT` against thrifty at `base_url`, in a fresh HOME under `cwd`."""
    home = cwd / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "unused",
           "ANTHROPIC_SMALL_FAST_MODEL": model, "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    args = [str(claude), "-p", "--model", model, "--allowedTools", allowed, "--output-format", "text", prompt]
    return await run_cli(args, env, cwd)
