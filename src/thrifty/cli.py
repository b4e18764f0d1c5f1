"""The `thrifty` command: serve the gateway, and the tools that read its ledger."""

from __future__ import annotations

import click

from thrifty import __version__, plugins


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thrifty")
def main() -> None:
    """thrifty: an LLM gateway that cuts the bill without cutting quality.

    Point your OpenAI or Anthropic SDK at `thrifty serve` and every request goes through
    the cost levers you configure (caching, routing, compression, caps) and lands in a
    ledger that says what it cost and what each lever saved.
    """


# Every command, the built-ins included, registers through the `thrifty.commands`
# entry-point group (see thrifty.plugins), so a plugin adds one the same way.
for _name, _command in plugins.commands().items():
    main.add_command(_command, _name)


if __name__ == "__main__":
    main()
