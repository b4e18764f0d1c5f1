"""`thrifty keys`: create, list, show, revoke and rotate virtual keys, and set team budgets.

The commands write the store the config names (the same tables `/v1/thrifty/keys` serves);
running servers pick changes up within `spend.keys_refresh` seconds. A key's material is
printed once, by `create` and `rotate`; nothing can show it again.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from thrifty.config import Config, ConfigError, load_config
from thrifty.errors import BadRequest
from thrifty.spend.control import parse_budgets
from thrifty.spend.keys import KeySpec, KeyStore, TeamSpec

__all__ = ["keys"]


def _open(config_path: str) -> tuple[Config, KeyStore]:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return config, KeyStore(config.store)


def _limits(rpm: int | None, tpm: int | None, concurrency: int | None) -> dict[str, int]:
    return {k: v for k, v in (("rpm", rpm), ("tpm", tpm), ("concurrency", concurrency)) if v is not None}


def _spec(model: type[Any], data: dict[str, Any]) -> Any:
    from thrifty.spend.admin import parse_spec

    try:
        return parse_spec(model, data)
    except BadRequest as exc:
        raise click.ClickException(exc.message) from None


def _print(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


_config = click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THRIFTY_CONFIG",
                       default="thrifty.yaml", show_default=True,
                       help="The thrifty config (its `store:` holds the keys).")


@click.group()
def keys() -> None:
    """Virtual keys: budgets, rate limits and allowed models per key and team."""


@keys.command()
@click.argument("name")
@_config
@click.option("--owner")
@click.option("--team")
@click.option("--tenant")
@click.option("--model", "models", multiple=True, help="An allowed configured model (repeat; none: any).")
@click.option("--route", "routes", multiple=True, help="An allowed route (the `route` tag; repeat).")
@click.option("--alias", "aliases", multiple=True, help="An allowed alias such as `auto` (repeat).")
@click.option("--tag", "tags", multiple=True, help="key=value stamped on every request of the key (repeat).")
@click.option("--expires", help="ISO date, a span (30d, 12h) or epoch seconds.")
@click.option("--budget", "budgets", multiple=True, help="USD/window: 10/day, 200/month, 5/24h (repeat).")
@click.option("--rpm", type=int)
@click.option("--tpm", type=int)
@click.option("--concurrency", type=int)
@click.option("--debounce", type=float, default=0.0, help="Seconds in which a repeated request is answered once.")
def create(name: str, config_path: str, owner: str | None, team: str | None, tenant: str | None,
           models: tuple[str, ...], routes: tuple[str, ...], aliases: tuple[str, ...], tags: tuple[str, ...],
           expires: str | None, budgets: tuple[str, ...], rpm: int | None, tpm: int | None,
           concurrency: int | None, debounce: float) -> None:
    """Create a key and print its material (shown this once)."""
    from thrifty.spend.admin import check_key_spec

    config, store = _open(config_path)
    try:
        parsed = [b.model_dump(mode="json") for b in parse_budgets(list(budgets))]
    except ValueError as exc:
        raise click.ClickException(f"budgets: {exc}") from None
    tag_map = {}
    for t in tags:
        k, sep, v = t.partition("=")
        if not sep:
            raise click.ClickException(f"tags: {t!r} is not key=value")
        tag_map[k] = v
    spec = _spec(KeySpec, {
        "name": name, "owner": owner, "team": team, "tenant": tenant, "models": list(models), "routes": list(routes),
        "aliases": list(aliases), "tags": tag_map, "expires": expires, "budgets": parsed,
        "limits": _limits(rpm, tpm, concurrency), "debounce": debounce})  # fmt: skip
    try:
        check_key_spec(spec, config, _aliases(config) if spec.aliases else None)
        key, material = store.create_key(spec)
    except BadRequest as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _print({**key.public(), "key": material})
    click.echo("Keep the key now: thrifty stores only its hash and cannot show it again.", err=True)
    if debounce and not (config.has_section("spend") or config.has_section("debounce")):
        click.echo("Note: debounce acts only where the config has a `spend:` section (even `spend: {}`).", err=True)


def _aliases(config: Config) -> Any:
    """The route lever's alias check, built without starting a server."""
    from thrifty import plugins
    from thrifty.gateway import Gateway

    gateway = Gateway(config)
    route = plugins.levers().get("route")
    if route is not None:
        route.build(gateway)
    return gateway.aliases


@keys.command(name="list")
@_config
@click.option("--all", "show_all", is_flag=True, help="Also revoked and expired keys.")
def list_keys(config_path: str, show_all: bool) -> None:
    """List keys (id, name, team, status, budgets)."""
    _, store = _open(config_path)
    for k in store.all_keys():
        p = k.public()
        if p["status"] != "active" and not show_all:
            continue
        budgets = ", ".join(f"${b['usd']}/{b['window']}" for b in p["budgets"]) or "-"
        click.echo(f"{p['id']}  {p['name']:<24} team={p['team'] or '-':<12} {p['status']:<8} budgets: {budgets}")


@keys.command()
@click.argument("ref")
@_config
def show(ref: str, config_path: str) -> None:
    """Show one key (by id or name)."""
    _, store = _open(config_path)
    key = store.key(ref)
    if key is None:
        raise click.ClickException(f"no key with id or name {ref!r}")
    _print(key.public())


@keys.command()
@click.argument("ref")
@_config
def revoke(ref: str, config_path: str) -> None:
    """Revoke a key: its requests are refused from now on."""
    _, store = _open(config_path)
    key = store.key(ref)
    if key is None:
        raise click.ClickException(f"no key with id or name {ref!r}")
    _print(store.revoke(key.key_id).public())


@keys.command()
@click.argument("ref")
@_config
def rotate(ref: str, config_path: str) -> None:
    """New material for a key (same id, budgets and counters); the old material stops working."""
    _, store = _open(config_path)
    key = store.key(ref)
    if key is None or key.revoked_at is not None:
        raise click.ClickException(f"no active key with id or name {ref!r}")
    key, material = store.rotate(key.key_id)
    _print({**key.public(), "key": material})
    click.echo("Keep the key now: thrifty stores only its hash and cannot show it again.", err=True)


@keys.command()
@click.argument("name")
@_config
@click.option("--budget", "budgets", multiple=True, help="USD/window shared by the team's keys (repeat).")
@click.option("--rpm", type=int)
@click.option("--tpm", type=int)
@click.option("--concurrency", type=int)
def team(name: str, config_path: str, budgets: tuple[str, ...], rpm: int | None, tpm: int | None,
         concurrency: int | None) -> None:
    """Create or update a team's budgets and limits (shared by its keys)."""
    _, store = _open(config_path)
    try:
        parsed = [b.model_dump(mode="json") for b in parse_budgets(list(budgets))]
    except ValueError as exc:
        raise click.ClickException(f"budgets: {exc}") from None
    spec = _spec(TeamSpec, {"name": name, "budgets": parsed, "limits": _limits(rpm, tpm, concurrency)})
    _print(store.put_team(spec).public())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(keys())
