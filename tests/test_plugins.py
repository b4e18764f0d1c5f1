"""A third-party package extends thrifty through entry points alone.

`tests/plugin_example` is a real package (pyproject, entry points) adding a lever (`shout`)
and a provider kind (`echo`). It is installed with pip into a folder of its own, put on the
path, and thrifty then validates its config section, places its lever, builds its provider
and serves through both, without a line of thrifty naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from thrifty import plugins
from thrifty.config import ConfigError, parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

from .conftest import serving

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example package pip-installed into a folder of its own, on sys.path."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("plugin") / "thrifty-shout"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))  # builds leave files
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    plugins.reset()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith("thrifty_shout")]:
            del sys.modules[name]
        plugins.reset()


CONFIG = """
store: "sqlite:///{db}"
ledger: {{flush_interval: 0.05}}
models:
  - name: parrot
    provider: echo
    options: {{prefix: "said: ", cost: 0.002}}
    price: {{input: 0, output: 0}}
cache: {{}}
shout: {{saving: 0.001}}
routes:
  quiet:
    shout: {{enabled: false}}
"""


def test_nothing_in_thrifty_names_the_example() -> None:
    for path in (SRC / "thrifty").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".toml", ".txt", ".html", ".js"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "shout" not in text.lower() and "thrifty_shout" not in text, path


def test_the_plugin_registers_a_lever_and_a_provider(installed: Path) -> None:
    assert "shout" in plugins.levers() and "echo" in plugins.providers()
    # placed by name: right after the exact cache
    order = plugins.lever_order()
    assert order.index("shout") == order.index("cache") + 1


def test_the_plugin_section_is_validated_at_load(installed: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: shout.savng: unknown key"):
        parse_config("shout: {savng: 1}\n", source="c.yaml")
    with pytest.raises(ConfigError, match=r"models\[0\].options.prefx: unknown key"):
        parse_config("models: [{name: p, provider: echo, options: {prefx: x}}]\n", source="c.yaml")


async def test_serving_through_the_plugin_lever_and_provider(installed: Path, tmp_path: Path) -> None:
    gateway = Gateway(parse_config(CONFIG.format(db=tmp_path / "l.db")))
    async with serving(create_app(gateway)) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        body = {"model": "parrot", "messages": [{"role": "user", "content": "hello there"}]}
        loud = await client.post("/v1/chat/completions", json=body)
        quiet = await client.post("/v1/chat/completions", json=body, headers={"X-Thrifty-Tags": "route=quiet"})
        assert gateway.pipeline is not None and gateway.pipeline.names == ["cache", "shout"]
        assert gateway.ledger is not None
        gateway.ledger.flush(5.0)
        rows = sorted(gateway.ledger.store.rows(), key=lambda r: r["ts"])
    assert loud.json()["choices"][0]["message"]["content"] == "said: HELLO THERE"
    assert quiet.json()["choices"][0]["message"]["content"] == "said: hello there"  # off on this route
    assert [r["provider"] for r in rows] == ["echo", "echo"]
    assert '"shout"' in rows[0]["savings"] and '"shout"' not in rows[1]["savings"]


def test_thrifty_check_shows_the_plugin_lever(installed: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "l.db"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "thrifty.cli", "check", "--config", str(path)],
                         capture_output=True, text=True, env=env, check=True).stdout  # fmt: skip
    assert "request path: cache -> shout -> dispatch" in out
    assert "[shout] quiet: off" in out and "[shout] default: on" in out
