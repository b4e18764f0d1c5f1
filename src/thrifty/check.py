"""`thrifty check`: validate a config as `serve` will run it, and show the effective settings.

Everything is validated when the file is read (every lever and tool section, every
`routes.<route>.<lever>` override, every model's provider options), so a typo is refused
here with `file:line: key: message` rather than when the server starts. Then, for each
lever, the settings it will use on each traffic class, after route overrides, with defaults
filled in, and whether it is on.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from thrifty import plugins
from thrifty.config import Config, ConfigError, load_config

__all__ = ["check", "effective_settings"]


def effective_settings(config: Config) -> dict[str, dict[str, dict[str, Any]]]:
    """lever -> traffic class -> its validated settings (as JSON-able values), for every lever
    and tool section the config names."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    levers = plugins.levers()
    for name, model in plugins.sections().items():
        lever = levers.get(name)
        configured = lever.configured(config) if lever is not None else config.has_section(name)
        if not configured:
            continue
        routes = ["default", *(r for r in config.lever_routes(name) if r != "default")]
        per: dict[str, dict[str, Any]] = {}
        for route in routes:
            from thrifty.config import lever_model

            settings = lever_model(config, name, model, route)
            per[route] = settings.model_dump(mode="json")
        out[name] = per
    return out


@click.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THRIFTY_CONFIG", required=True,
              help="The config file to check (or $THRIFTY_CONFIG).")
@click.option("--json", "as_json", is_flag=True, help="Print the effective settings as JSON.")
def check(config_path: str, as_json: bool) -> None:
    """Validate a config file and print every lever's effective settings per traffic class.

    Exit status 0 when the config is valid, 2 (with every problem, by file, line and key)
    when it is not.

    \b
    Example:
      thrifty check --config thrifty.yaml
    """
    try:
        config = load_config(config_path)
        settings = effective_settings(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps({"models": [m.name for m in config.models], "levers": settings},
                                option=orjson.OPT_INDENT_2).decode())
        return
    order = plugins.lever_order()
    click.echo(f"{config_path}: valid")
    click.echo(f"models: {', '.join(f'{m.name} ({m.provider})' for m in config.models) or 'none'}")
    click.echo(f"request path: {' -> '.join(n for n in order if n in settings) or '(no levers)'} -> dispatch")
    for name in [*(n for n in order if n in settings), *(n for n in settings if n not in order)]:
        for route, values in settings[name].items():
            on = values.get("enabled", True)
            state = "on" if on else "off"
            click.echo(f"\n[{name}] {route}: {state}")
            for key, value in values.items():
                click.echo(f"  {key}: {orjson.dumps(value).decode()}")
