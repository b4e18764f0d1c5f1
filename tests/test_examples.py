"""The example config in the README is valid and builds every lever it names."""

from __future__ import annotations

from pathlib import Path

from thrifty.config import load_config
from thrifty.gateway import Gateway
from thrifty.pipeline.pipeline import build_levers

ROOT = Path(__file__).resolve().parent.parent


async def test_example_config_builds_its_levers() -> None:
    config = load_config(ROOT / "examples" / "thrifty.yaml")
    assert {m.name for m in config.models} == {"gpt-4o", "gpt-4o-mini", "claude-sonnet", "local"}
    gateway = Gateway(config)
    names = [s.name for s in build_levers(gateway)]
    for lever in ("canonicalize", "cache", "dedup", "compress", "cap", "route"):
        assert lever in names
