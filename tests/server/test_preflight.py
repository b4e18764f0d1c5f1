"""`thrifty serve` does not start half-configured: a durable store that does not answer is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from thrifty.config import parse_config
from thrifty.errors import StoreUnreachable
from thrifty.server.preflight import durable_stores, reach_stores

MODELS = """
models:
  - {name: gpt-test, provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:9/v1"}
"""


def test_serve_exits_naming_an_unreachable_store_without_its_password(tmp_path: Path) -> None:
    config = tmp_path / "thrifty.yaml"
    config.write_text("store: postgresql://app:s3cret-pw@127.0.0.1:1/ledger\nserver: {store_wait: 0.5}\n" + MODELS)
    done = subprocess.run([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot reach the store postgresql://app@127.0.0.1:1/ledger (store: in the config)" in done.stderr
    assert "s3cret-pw" not in done.stderr and "Traceback" not in done.stderr


def test_a_store_that_answers_within_store_wait_is_waited_for() -> None:
    config = parse_config("store: postgresql://db/ledger\nserver: {store_wait: 5}\n" + MODELS)
    tries: list[str] = []

    def blip(url: str) -> None:  # down twice, then up: a rolling restart of the database
        tries.append(url)
        if len(tries) < 3:
            raise OSError("connection refused")

    reach_stores(config, probe=blip)
    assert tries == ["postgresql://db/ledger"] * 3


def test_a_separate_pgvector_index_is_a_durable_store_too() -> None:
    config = parse_config("store: sqlite:///x.db\nsemantic_cache: {index: 'postgresql://vec/db'}\n"
                          "server: {store_wait: 0}\n" + MODELS)
    assert durable_stores(config) == [("store:", "sqlite:///x.db"), ("semantic_cache.index:", "postgresql://vec/db")]

    def down(url: str) -> None:
        if url.startswith("postgresql"):
            raise OSError("no route to host")

    with pytest.raises(StoreUnreachable, match=r"postgresql://vec/db \(semantic_cache.index: in the config\): no route"):
        reach_stores(config, probe=down)
