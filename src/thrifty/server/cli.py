"""`thrifty serve`: run the gateway."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import sys
from collections.abc import Callable

import click

from thrifty.config import Config, ConfigError, load_config
from thrifty.server.preflight import reach_stores

NO_CONFIG_HELP = """\
thrifty needs at least one model to serve. Write a config file, for example thrifty.yaml:

  models:
    - name: gpt-4o-mini
      provider: openai            # openai | anthropic | local | replay
      model: gpt-4o-mini
      api_key_env: OPENAI_API_KEY

then run:  thrifty serve --config thrifty.yaml
"""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_config() -> Config:
    """The zero-config gateway: the embedded local models (SmolLM2-135M-Instruct first, the
    default; Gemma 3 270M by name), if this install has the engine."""
    try:
        from thrifty.engine.models import zero_config_models  # type: ignore[import-not-found,unused-ignore,attr-defined]
    except ImportError:
        raise ConfigError(NO_CONFIG_HELP) from None
    return Config(models=zero_config_models())


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THRIFTY_CONFIG",
              help="YAML config (models, store, levers). Without one, the embedded local model is served.")
@click.option("--host", help="Address to bind (default 127.0.0.1; another address needs server.keys).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def serve(config_path: str | None, host: str | None, port: int | None, log_level: str) -> None:
    """Start the gateway: OpenAI and Anthropic compatible endpoints on one port.

    \b
    Point an SDK at it:
      OPENAI_BASE_URL=http://127.0.0.1:8000/v1      (openai)
      ANTHROPIC_BASE_URL=http://127.0.0.1:8000      (anthropic, Claude Code)
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_path) if config_path else default_config()
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    if host:
        config.server.host = host
    if port is not None:
        config.server.port = port
    if not config.models:
        click.echo(NO_CONFIG_HELP, err=True)
        sys.exit(2)
    if not is_loopback(config.server.host) and not config.server.keys:
        click.echo(
            f"refusing to listen on {config.server.host}: without gateway keys anyone who can reach it could spend "
            "your provider credit. Add server.keys to the config, or bind 127.0.0.1.",
            err=True,
        )
        sys.exit(2)
    try:
        reach_stores(config)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(config))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(config: Config) -> None:
    from aiohttp import web

    from thrifty.gateway import Gateway
    from thrifty.server.app import create_app

    gateway = Gateway(config)
    app = create_app(gateway)
    from thrifty.server.timeouts import ThriftyRunner

    runner: web.AppRunner = ThriftyRunner(app, header_timeout=config.server.header_timeout,
                                          idle_timeout=config.server.idle_timeout, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, backlog=1024, reuse_address=True)
    await site.start()
    # Everything loaded so far (config, price tables, models) lives as long as the server:
    # keep it out of the garbage collector's scans, which would otherwise walk it again and again.
    gc.freeze()
    logging.getLogger("thrifty").info(
        "thrifty listening on http://%s:%s (models: %s)",
        config.server.host, config.server.port, ", ".join(m.name for m in config.models),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
