"""`thrifty cache clear`: invalidate cached answers from the command line.

It works on the stores the config names (SQLite file, Redis), so it needs no running
server; a server's in-memory tier notices within a second. With `--server` it asks a
running gateway instead (needed for a `memory` store, which lives only in that process).
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request

import click
import orjson

from thrifty.cache.admin import Selection, SelectionError, invalidate, selection_from
from thrifty.config import ConfigError, load_config


@click.group()
def cache() -> None:
    """Manage the exact response cache."""


@cache.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THRIFTY_CONFIG",
              help="The gateway's YAML config (to find its cache stores).")
@click.option("--key", help="One cache key (extra.cache_key in the ledger row).")
@click.option("--route", help="Every answer stored for this route.")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Answers carrying this tag (repeatable; all must match).")
@click.option("--tenant", help="Every answer of this tenant.")
@click.option("--all", "everything", is_flag=True, help="Everything.")
@click.option("--server", help="Ask a running gateway at this URL instead (e.g. http://127.0.0.1:8000).")
@click.option("--api-key", envvar="THRIFTY_API_KEY", help="Admin key for --server (default $THRIFTY_API_KEY).")
def clear(config_path: str | None, key: str | None, route: str | None, tags: tuple[str, ...], tenant: str | None,
          everything: bool, server: str | None, api_key: str | None) -> None:
    """Invalidate cached answers by key, route, tag or tenant, or all of them."""
    try:
        selection = selection_from({"key": key, "route": route, "tenant": tenant, "all": everything}, list(tags))
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from None
    if server:
        deleted = _ask_server(server, api_key, selection)
    else:
        if not config_path:
            raise click.UsageError("--config is needed to find the cache stores (or use --server)")
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
        from thrifty.gateway import Gateway

        deleted = asyncio.run(invalidate(Gateway(config), selection))
    click.echo(f"deleted {deleted} cached answer{'s' if deleted != 1 else ''} ({selection.describe()})")


def _ask_server(server: str, api_key: str | None, selection: Selection) -> int:
    body = {"key": selection.key, "route": selection.route, "tenant": selection.tenant,
            "tags": selection.tags or None, "all": selection.everything}
    request = urllib.request.Request(
        server.rstrip("/") + "/v1/thrifty/cache",
        data=orjson.dumps({k: v for k, v in body.items() if v}),
        method="DELETE",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a URL the user gave
            return int(orjson.loads(response.read())["deleted"])
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        click.echo(f"{server} answered {exc.code}: {detail}", err=True)
        sys.exit(1)
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"could not reach {server}: {exc}", err=True)
        sys.exit(1)
