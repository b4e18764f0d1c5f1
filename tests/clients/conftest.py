"""Real agent CLIs for the end-to-end client tests, installed once into `.thrifty/clients`.

The tests need npm (the CLIs are npm packages). Without it they fail, saying how to get it,
rather than skip: set THRIFTY_SKIP_CLIENT_TESTS=1 to skip them on purpose, with the reason
shown in the test report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / ".thrifty" / "clients"

#: The CLI versions the tests were written against.
CODEX = "@openai/codex@0.171.0"
CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"


def npm_binary(package: str, binary: str) -> Path:
    """The path of `binary` (relative to node_modules) from npm `package`, installed into
    PREFIX when missing. Paths inside the packages are used, not npm's `.bin` links: a
    later `npm install` may rebuild those, and Claude Code's link is made by an install
    script that npm may not run."""
    path = PREFIX / "node_modules" / binary
    if path.exists():
        return path
    if os.environ.get("THRIFTY_SKIP_CLIENT_TESTS") == "1":
        pytest.skip(f"THRIFTY_SKIP_CLIENT_TESTS=1: {package} is not installed and was not installed")
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is needed to install {package} for this test (install Node.js 18+, or run "
                    "`bash scripts/setup.sh --dev`); set THRIFTY_SKIP_CLIENT_TESTS=1 to skip it on purpose")
    PREFIX.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", package],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not path.exists():
        pytest.fail(f"npm could not install {package}: {done.stderr[-2000:]}")
    return path


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    return npm_binary(CODEX, "@openai/codex/bin/codex.js")


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    return npm_binary(CLAUDE_CODE, f"@anthropic-ai/claude-code-linux-{_arch()}/claude")


def _arch() -> str:
    import platform

    return {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
