"""`thrifty spend`: what the ledger says was spent, grouped the way you ask."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal

import click

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None) -> float | None:
    """`24h`, `7d`, `30m`, an ISO date or datetime (UTC), or a unix time; None for all time."""
    if value is None or value == "":
        return None
    m = _REL.match(value.strip())
    if m:
        return time.time() - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"cannot read since={value!r}: use 24h, 7d, 2026-11-01 or a unix time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def money(value: Decimal) -> str:
    if value == 0:
        return "$0"
    if abs(value) < Decimal("0.01"):
        return f"${value:.6f}"
    return f"${value:,.4f}"


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read the store from this config.")
@click.option("--store", help="Ledger store URL (default: the config's, else sqlite:///thrifty.db).")
@click.option("--since", help="Only requests since then: 24h, 7d, 2026-11-01, or a unix time.")
@click.option("--by", type=click.Choice(["model", "served_model", "provider", "route", "feature", "key", "tenant", "day", "status"]),
              default="model", show_default=True, help="How to group the spend.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def spend(config_path: str | None, store: str | None, since: str | None, by: str, as_json: bool) -> None:
    """Print what was spent, what it would have cost without thrifty, and what each lever saved.

    \b
    Examples:
      thrifty spend --since 24h --by route
      thrifty spend --store postgresql://localhost/test --by day
    """
    import orjson
    from rich.console import Console
    from rich.table import Table

    from thrifty.config import load_config
    from thrifty.ledger.store import open_store

    url = store or (load_config(config_path).store if config_path else "sqlite:///thrifty.db")
    try:
        t0 = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    ledger = open_store(url)
    try:
        rows = ledger.spend(by, t0)
        levers = ledger.savings_by_lever(t0)
    finally:
        ledger.close()
    if as_json:
        click.echo(orjson.dumps({"by": by, "rows": rows, "savings_by_lever": levers}, default=str, option=orjson.OPT_INDENT_2))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"spend by {by}" + (f" since {since}" if since else ""), show_footer=True)
    total = {k: sum((r[k] for r in rows), Decimal(0)) for k in ("cost", "counterfactual_cost", "saved")}
    table.add_column(by, footer="total")
    table.add_column("requests", justify="right", footer=str(sum(r["requests"] for r in rows)))
    table.add_column("input tok", justify="right")
    table.add_column("output tok", justify="right")
    table.add_column("cost", justify="right", footer=money(total["cost"]))
    table.add_column("without thrifty", justify="right", footer=money(total["counterfactual_cost"]))
    table.add_column("saved", justify="right", footer=money(total["saved"]))
    table.add_column("errors", justify="right")
    for r in rows:
        table.add_row(str(r[by]), str(r["requests"]), f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                      money(r["cost"]), money(r["counterfactual_cost"]), money(r["saved"]), str(r["errors"]))
    console.print(table)
    if levers:
        lt = Table(title="savings by lever")
        lt.add_column("lever")
        lt.add_column("saved", justify="right")
        for lever, amount in levers.items():
            lt.add_row(lever, money(amount))
        console.print(lt)
    if not rows:
        console.print(f"[dim]no requests in {url}" + (f" since {since}" if since else "") + "[/dim]")
