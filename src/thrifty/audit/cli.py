"""`thrifty audit LOGS`: where the money goes, what is wasted, what each lever would save."""

from __future__ import annotations

import sys

import click
import orjson
from rich.console import Console

from thrifty.audit.report import print_summary, write_html
from thrifty.audit.run import audit_log
from thrifty.audit.waste import AuditSettings


@click.command("audit")
@click.argument("logs")
@click.option("--format", "fmt", type=click.Choice(["auto", "ledger", "jsonl", "litellm"]), default="auto",
              show_default=True, help="Log format; auto looks at the URL and the first record.")  # fmt: skip
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), help="Write the HTML report here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write the audit as JSON here.")
@click.option("--near-dup-sample", type=int, default=AuditSettings.near_dup_sample, show_default=True,
              help="Distinct prompts embedded for the near-duplicate search (0: off).")  # fmt: skip
@click.option("--near-dup-threshold", type=float, default=AuditSettings.near_dup_threshold, show_default=True)
@click.option("--cheap-model", default=AuditSettings.cheap_model, show_default=True,
              help="The model the route estimate moves easy requests to.")  # fmt: skip
@click.option("--retry-window", type=float, default=AuditSettings.retry_window_s, show_default=True,
              help="Seconds within which a repeat from the same key counts as a retry.")  # fmt: skip
@click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")
def audit(
    logs: str,
    fmt: str,
    html_path: str | None,
    json_path: str | None,
    near_dup_sample: int,
    near_dup_threshold: float,
    cheap_model: str,
    retry_window: float,
    no_progress: bool,
) -> None:
    """Audit LOGS: a thrifty ledger (SQLite file or postgresql:// URL), an OpenAI-format JSONL
    log ({"request", "response", "timestamp"?, "tags"?} per line) or a LiteLLM spend-log export.

    Streams the input (bounded memory at any size); bad lines are counted and listed, never fatal.
    """
    settings = AuditSettings(
        near_dup_sample=near_dup_sample,
        near_dup_threshold=near_dup_threshold,
        cheap_model=cheap_model,
        retry_window_s=retry_window,
    )
    try:
        result = audit_log(logs, fmt, settings, progress=not no_progress and sys.stderr.isatty())  # type: ignore[arg-type]
    except FileNotFoundError:
        raise click.ClickException(f"no such log: {logs}") from None
    except Exception as exc:  # a database that cannot be opened, a file that is not a log
        raise click.ClickException(f"cannot read {logs}: {exc}") from None
    print_summary(result, Console())
    if html_path:
        write_html(result, html_path)
        click.echo(f"HTML report: {html_path}")
    if json_path:
        with open(json_path, "wb") as f:
            f.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        click.echo(f"JSON: {json_path}")
