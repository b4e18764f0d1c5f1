"""The `thrifty` command: serve the gateway, and the tools that read its ledger."""

from __future__ import annotations

import importlib

import click

from thrifty import __version__

#: Subcommands that live in their own modules, as "module:attribute" of a click command.
#: Each tool adds one line here.
SUBCOMMANDS: list[str] = [
    "thrifty.server.cli:serve",
    "thrifty.ledger.spend:spend",
    "thrifty.evals.cli:eval_group",
    "thrifty.evals.export:export_group",
    "thrifty.cache.cli:cache",
    "thrifty.audit.cli:audit",
    "thrifty.audit.cli:replay",
    "thrifty.compress.cli:compress_report",
    "thrifty.routing.cli:router",
    "thrifty.planner.cli:plan",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thrifty")
def main() -> None:
    """thrifty: an LLM gateway that cuts the bill without cutting quality.

    Point your OpenAI or Anthropic SDK at `thrifty serve` and every request goes through
    the cost levers you configure (caching, routing, compression, caps) and lands in a
    ledger that says what it cost and what each lever saved.
    """


for _spec in SUBCOMMANDS:
    _module, _, _attr = _spec.partition(":")
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":
    main()
