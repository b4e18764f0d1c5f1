"""`thrifty compress-report`: the token levers' figures per route, from the ledger.

Prints, per route, the provider prefix-cache hit rate (from cache_read_tokens), how often
answers hit the output cap (finish_reason length, overall and among capped requests), and
the input tokens each compression lever removed.
"""

from __future__ import annotations

import click

from thrifty.compress.reports import prefix_cache_hit_rate, tokens_saved_by_route, truncation_by_route
from thrifty.ledger.store import open_store


@click.command("compress-report")
@click.option("--store", default="sqlite:///thrifty.db", show_default=True, help="the ledger store URL")
def compress_report(store: str) -> None:
    """Prefix-cache hit rate, output-cap truncation and tokens removed, per route."""
    ledger = open_store(store)
    try:
        click.echo(f"{'route':<20} {'requests':>8} {'cache-hit req':>13} {'cached tokens':>13}")
        for r in prefix_cache_hit_rate(ledger):
            click.echo(f"{r.route:<20} {r.requests:>8} {r.request_hit_rate:>13.1%} {r.token_hit_rate:>13.1%}")
        click.echo(f"\n{'route':<20} {'requests':>8} {'truncated':>9} {'capped':>8} {'capped+cut':>10}")
        for t in truncation_by_route(ledger):
            click.echo(
                f"{t.route:<20} {t.requests:>8} {t.truncation_rate:>9.1%} {t.capped:>8} {t.capped_truncation_rate:>10.1%}"
            )
        saved = tokens_saved_by_route(ledger)
        if saved:
            click.echo(f"\n{'route':<20} {'lever':<20} {'tokens removed':>14}")
            for route, levers in sorted(saved.items()):
                for lever, n in sorted(levers.items()):
                    click.echo(f"{route:<20} {lever:<20} {n:>14,}")
    finally:
        ledger.close()
