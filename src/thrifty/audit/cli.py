"""`thrifty audit LOGS`: where the money goes, what is wasted, what each lever would save."""

from __future__ import annotations

import sys

import click
import orjson
from rich.console import Console

from thrifty.audit.replay import ReplayResult
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
              help="Distinct questions sampled for the near-duplicate search (0: off).")  # fmt: skip
@click.option("--near-dup-min-cosine", type=float, default=AuditSettings.near_dup_min_cosine, show_default=True,
              help="Candidates below this cosine are not given to the verifier (the semantic cache's min_cosine).")  # fmt: skip
@click.option("--cheap-model", default=AuditSettings.cheap_model, show_default=True,
              help="The model the route estimate moves easy requests to.")  # fmt: skip
@click.option("--retry-window", type=float, default=AuditSettings.retry_window_s, show_default=True,
              help="Seconds within which a repeat from the same key counts as a retry.")  # fmt: skip
@click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")
@click.option("--measure", "measure_n", type=int, help="Replay this many sampled requests through --config and "
              "grade them against the logged answers with --judge: measured cost and quality deltas.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="The candidate config for --measure (its levers, router and providers answer the sample).")  # fmt: skip
@click.option("--judge", help="For --measure: a model of the candidate config that grades each answer.")
@click.option("--model-map", "model_map", multiple=True, metavar="OLD=NEW",
              help="For --measure: send requests for OLD to configured model NEW; `*=NEW` for all.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="For --measure: which requests are sampled.")
def audit(
    logs: str,
    fmt: str,
    html_path: str | None,
    json_path: str | None,
    near_dup_sample: int,
    near_dup_min_cosine: float,
    cheap_model: str,
    retry_window: float,
    no_progress: bool,
    measure_n: int | None,
    config_path: str | None,
    judge: str | None,
    model_map: tuple[str, ...],
    seed: int,
) -> None:
    """Audit LOGS: a thrifty ledger (SQLite file or postgresql:// URL), an OpenAI-format JSONL
    log ({"request", "response", "timestamp"?, "tags"?} per line) or a LiteLLM spend-log export.

    Streams the input (bounded memory at any size); bad lines are counted and listed, never fatal.
    With --measure N --config candidate.yaml --judge MODEL, N sampled requests are replayed through
    the candidate and graded against what was logged (cost and quality with 95% intervals).
    """
    if measure_n is not None and (config_path is None or not judge):
        raise click.UsageError("--measure needs --config (the candidate) and --judge (one of its models)")
    settings = AuditSettings(
        near_dup_sample=near_dup_sample,
        near_dup_min_cosine=near_dup_min_cosine,
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
    if measure_n is not None:
        assert config_path is not None and judge is not None
        _measure(logs, fmt, measure_n, config_path, judge, _parse_map(model_map), seed)


def _parse_map(items: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"{item!r} is not OLD=NEW", param_hint="--model-map")
        mapping[old.strip()] = new.strip()
    return mapping


def _measure(logs: str, fmt: str, n: int, config_path: str, judge: str, mapping: dict[str, str], seed: int) -> None:
    from thrifty.audit.measure import run_measure
    from thrifty.audit.report import print_measure
    from thrifty.config import ConfigError, load_config

    try:
        config = load_config(config_path)
        res = run_measure(logs, config, n, judge, fmt=fmt, model_map=mapping, seed=seed)
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    print_measure(res, Console())


@click.command("replay")
@click.argument("logs")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The candidate thrifty config (models, levers) to replay the traffic through.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["auto", "ledger", "jsonl", "litellm"]), default="auto", show_default=True)
@click.option("--live", is_flag=True, help="Call the candidate's real providers (costs money). Default: recorded answers.")
@click.option("--model-map", "model_map", multiple=True, metavar="OLD=NEW",
              help="Send requests for model OLD to configured model NEW; `*=NEW` for all. Repeatable.")  # fmt: skip
@click.option("--limit", type=int, help="Replay at most this many requests.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write the result as JSON here.")
def replay(
    logs: str, config_path: str, fmt: str, live: bool, model_map: tuple[str, ...], limit: int | None, json_path: str | None
) -> None:
    """Replay past traffic in LOGS through a candidate config and compare cost (and quality,
    where the log has labels) with what was actually spent."""
    from thrifty.audit.replay import run_replay
    from thrifty.config import ConfigError, load_config

    mapping = _parse_map(model_map)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if live:
        click.echo("replaying against the candidate's real providers (--live): this is billed", err=True)
    try:
        res = run_replay(logs, config, fmt=fmt, live=live, model_map=mapping, limit=limit)
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError:
        raise click.ClickException(f"no such log: {logs}") from None
    print_replay(res, Console())
    if json_path:
        with open(json_path, "wb") as f:
            f.write(orjson.dumps(res.to_dict(), option=orjson.OPT_INDENT_2))


def print_replay(res: ReplayResult, con: Console) -> None:
    from rich.table import Table

    from thrifty.audit.report import pct, usd

    mode = "live providers" if res.live else "recorded answers, priced at the candidate's rates"
    con.print(f"[bold]thrifty replay[/bold]: {res.replayed:,} of {res.requests:,} requests replayed ({mode})")
    t = Table(title_justify="left")
    for col in ("", "spend", "per request"):
        t.add_column(col, justify="right" if col else "left")
    n = max(res.replayed, 1)
    t.add_row("actual (logged)", usd(res.actual_cost), usd(res.actual_cost / n))
    t.add_row("candidate", usd(res.candidate_cost), usd(res.candidate_cost / n))
    diff = res.actual_cost - res.candidate_cost
    t.add_row("saving", usd(diff), pct(diff / res.actual_cost) if res.actual_cost else "-")
    con.print(t)
    if res.labelled:
        con.print(
            f"quality on {res.labelled:,} labelled requests: actual {pct(res.actual_correct / res.labelled)} correct, "
            f"candidate {pct(res.candidate_correct / res.labelled)} correct"
            + (f" ({res.unlabelled_reuse:,} answers reused by a lever are not judged)" if res.unlabelled_reuse else "")
        )
    else:
        con.print("quality: no labels in this log (add \"labels\": {\"correct\": {model: bool}} to judge)")
    if res.savings:
        con.print("claimed by levers: " + ", ".join(f"{k} {usd(v)}" for k, v in sorted(res.savings.items(), key=lambda kv: -kv[1])))
    con.print("served by: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res.served.items(), key=lambda kv: -kv[1])))
    if res.failed:
        con.print(f"[yellow]{res.failed:,} requests could not be replayed[/yellow]; first: "
                  + "; ".join(f"line {n}: {m}" for n, m in res.failures[:3]))  # fmt: skip
    if res.bad_lines:
        con.print(f"[yellow]{res.bad_lines:,} bad lines skipped[/yellow] (lines {', '.join(str(n) for n, _ in res.bad_examples[:10])})")
