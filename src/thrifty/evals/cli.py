"""`thrifty eval run` and `thrifty eval gate`: quality, cost and latency of a config, before it ships."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from thrifty.config import ConfigError, load_config
from thrifty.evals.graders import Services
from thrifty.evals.runner import (
    Comparison,
    GatewayTarget,
    ResultCache,
    RunResult,
    Summary,
    compare,
    labels,
    run_set,
)
from thrifty.evals.sets import EvalSet, SetError, load_set

#: Exit codes of `eval gate`.
EXIT_OK, EXIT_REGRESSED, EXIT_ERROR = 0, 1, 2


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:  # CI logs and pipes: do not squeeze tables into 80 columns
        console = Console(highlight=False, width=200)
    return console


def _load(set_path: str) -> EvalSet:
    try:
        eval_set = load_set(set_path)
    except SetError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in eval_set.problems:
        click.echo(f"{set_path}:{problem.line}: skipped: {problem.message}", err=True)
    if not eval_set.items:
        raise click.ClickException(f"{set_path}: no usable items")
    return eval_set


def _fmt_ci(iv: Any, unit: str = "", digits: int = 1) -> str:
    if iv.n == 0 or math.isnan(iv.mean):
        return "-"
    return f"{iv.mean:.{digits}f}{unit} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def _summary_table(summaries: list[Summary], confidence: float) -> Table:
    pct = int(round(confidence * 100))
    table = Table(title=f"quality, cost and latency ({pct}% bootstrap intervals)")
    for col in ("config", "items", "graded", "ungraded", "errors", "quality %", "cost total $",
                "cost/item $", "latency ms", "p50 ms", "p95 ms"):  # fmt: skip
        table.add_column(col, justify="left" if col == "config" else "right")
    for s in summaries:
        table.add_row(
            s.label, str(s.items), str(s.graded), str(s.ungraded), str(s.errors), _fmt_ci(s.quality),
            f"{s.cost_total:.6f}", _fmt_ci(s.cost_per_item, digits=6), _fmt_ci(s.latency_ms, digits=0),
            f"{s.latency_p50:.0f}", f"{s.latency_p95:.0f}",
        )  # fmt: skip
    return table


def _print_comparison(console: Console, cmp: Comparison, max_diffs: int) -> None:
    console.print(_summary_table([cmp.a, cmp.b], cmp.confidence))
    d = cmp.delta_pp
    console.print(
        f"B − A quality: {_fmt_ci(d, ' pp', 2)} over {d.n} items graded under both; "
        f"P(drop > {cmp.max_drop_pp:g} pp) = {cmp.paired.p_drop_exceeds:.3f}; "
        f"cost B/A = {cmp.b.cost_total / cmp.a.cost_total:.3f}" if cmp.a.cost_total else
        f"B − A quality: {_fmt_ci(d, ' pp', 2)} over {d.n} items graded under both; "
        f"P(drop > {cmp.max_drop_pp:g} pp) = {cmp.paired.p_drop_exceeds:.3f}"
    )  # fmt: skip
    if cmp.diffs:
        table = Table(title=f"per-item diff ({len(cmp.diffs)} items changed)")
        for col in ("id", "change", "A", "B", "Δ cost $", "grader says"):
            table.add_column(col)
        for diff in cmp.diffs[:max_diffs]:
            table.add_row(diff.id, diff.kind, diff.a, diff.b, f"{diff.cost_delta:+.6f}", diff.detail[:80])
        console.print(table)
        if len(cmp.diffs) > max_diffs:
            console.print(f"... and {len(cmp.diffs) - max_diffs} more (see --report)")


async def _run_config(config_path: str, eval_set: EvalSet, opts: dict[str, Any]) -> RunResult:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    cache = None if opts["no_cache"] else ResultCache(opts["cache"])
    try:
        async with GatewayTarget(config, label=Path(config_path).name, default_model=opts["model"]) as target:
            services = Services(judge_model=opts["judge_model"])
            return await run_set(
                eval_set.items, target, concurrency=opts["concurrency"], cache=cache, services=services,
                progress=not opts["quiet"],
            )  # fmt: skip
    finally:
        if cache is not None:
            cache.close()


async def _run_all_models(config_path: str, eval_set: EvalSet, opts: dict[str, Any]) -> dict[str, RunResult]:
    config = load_config(config_path)
    models = list(opts["models"]) or [m.name for m in config.models]
    cache = None if opts["no_cache"] else ResultCache(opts["cache"])
    runs: dict[str, RunResult] = {}
    try:
        async with GatewayTarget(config, label=Path(config_path).name) as target:
            for model in models:
                if not config.has_model(model):
                    raise click.ClickException(f"{model!r} is not a model in {config_path}")
                runs[model] = await run_set(
                    eval_set.items, target, concurrency=opts["concurrency"], cache=cache, model=model,
                    services=Services(judge_model=opts["judge_model"]), progress=not opts["quiet"], desc=model,
                )  # fmt: skip
    finally:
        if cache is not None:
            cache.close()
    return runs


def _common(fn: Any) -> Any:
    options = [
        click.option("--set", "set_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Eval set (JSONL)."),
        click.option("--config", "config_a", required=True, type=click.Path(exists=True, dir_okay=False), help="Config A (the baseline)."),
        click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 512)),
        click.option("--model", default=None, help="Model for items whose request names none (default: the config's first)."),
        click.option("--cache", default=".thrifty/eval-cache.sqlite", show_default=True, type=click.Path(dir_okay=False), help="Result cache (SQLite)."),
        click.option("--no-cache", is_flag=True, help="Run every item again."),
        click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999)),
        click.option("--report", type=click.Path(dir_okay=False), help="Also write the full report (JSON) here."),
        click.option("--max-diffs", default=30, show_default=True, help="Changed items to list."),
        click.option("--judge-model", default=None, help="Judge for `judge` graders that name no model (a configured model)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group("eval")
def eval_group() -> None:
    """Eval sets: quality, cost and latency of a config, and a gate for config changes."""


@eval_group.command("run")
@_common
@click.option("--against", "config_b", type=click.Path(exists=True, dir_okay=False), help="Config B to compare with A.")
@click.option("--all-models", is_flag=True, help="Run every item on every configured model (no levers); write router labels.")
@click.option("--models", multiple=True, help="With --all-models: only these models (repeatable).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False), help="With --all-models: labels file (JSONL).")
@click.option("--max-drop", default=1.0, show_default=True, help="Tolerance in percentage points for the comparison line.")
def run_cmd(**opts: Any) -> None:
    """Run an eval set through a config (and another, to compare)."""
    console = _console()
    eval_set = _load(opts["set_path"])
    if opts["all_models"]:
        runs = asyncio.run(_run_all_models(opts["config_a"], eval_set, opts))
        console.print(_summary_table([r.summary(opts["confidence"]) for r in runs.values()], opts["confidence"]))
        rows = labels(eval_set.items, runs)
        out = Path(opts["labels_path"] or "labels.jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        console.print(f"wrote {len(rows)} labeled items for {len(runs)} models to {out}")
        return
    run_a = asyncio.run(_run_config(opts["config_a"], eval_set, opts))
    report: dict[str, Any]
    if opts["config_b"]:
        run_b = asyncio.run(_run_config(opts["config_b"], eval_set, opts))
        cmp = compare(run_a, run_b, opts["max_drop"], opts["confidence"])
        _print_comparison(console, cmp, opts["max_diffs"])
        report = {"comparison": cmp.to_dict(), "items": {"a": _items(run_a), "b": _items(run_b)}}
    else:
        summary = run_a.summary(opts["confidence"])
        console.print(_summary_table([summary], opts["confidence"]))
        report = {"summary": summary.to_dict(), "items": {"a": _items(run_a)}}
    _write_report(opts["report"], report)


def _items(run: RunResult) -> list[dict[str, Any]]:
    return [r.to_dict() for r in run.results.values()]


def _write_report(path: str | None, report: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


@eval_group.command("gate")
@_common
@click.option("--against", "config_b", required=True, type=click.Path(exists=True, dir_okay=False), help="Config B (the change).")
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(0, 100), help="Tolerated quality drop, percentage points.")
@click.option("--max-ungraded", default=0.1, show_default=True, type=click.FloatRange(0, 1), help="Refuse to decide when more than this share of items is ungraded.")
def gate_cmd(**opts: Any) -> None:
    """Exit 1 when B's quality is below A's by more than --max-drop points with --confidence.

    Exit 0 when it is not; exit 2 when the gate cannot decide (bad input, too many
    ungraded items, nothing graded under both configs).
    """
    console = _console()
    try:
        eval_set = _load(opts["set_path"])
        run_a = asyncio.run(_run_config(opts["config_a"], eval_set, opts))
        run_b = asyncio.run(_run_config(opts["config_b"], eval_set, opts))
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # a crash must never read as "regressed" (1) or "passed" (0)
        click.echo(f"gate: cannot decide: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    cmp = compare(run_a, run_b, opts["max_drop"], opts["confidence"])
    _print_comparison(console, cmp, opts["max_diffs"])
    _write_report(opts["report"], {"comparison": cmp.to_dict(), "items": {"a": _items(run_a), "b": _items(run_b)}})
    sys.exit(gate_verdict(cmp, opts["max_ungraded"], console))


def gate_verdict(cmp: Comparison, max_ungraded: float, console: Console | None = None) -> int:
    """The gate's exit code for a comparison, with the reason printed."""
    say = console.print if console is not None else (lambda *_: None)
    worst_ungraded = max(
        cmp.a.ungraded / cmp.a.items if cmp.a.items else 1.0, cmp.b.ungraded / cmp.b.items if cmp.b.items else 1.0
    )
    if cmp.paired.delta.n == 0:
        say("[red]gate: no item was graded under both configs; cannot decide[/red]")
        return EXIT_ERROR
    if worst_ungraded > max_ungraded:
        say(f"[red]gate: {worst_ungraded:.0%} of items are ungraded (limit {max_ungraded:.0%}); cannot decide[/red]")
        return EXIT_ERROR
    if cmp.regressed:
        say(
            f"[red]gate: FAIL: B is worse than A by more than {cmp.max_drop_pp:g} pp "
            f"(P = {cmp.paired.p_drop_exceeds:.3f} >= {cmp.confidence:g})[/red]"
        )
        return EXIT_REGRESSED
    say(
        f"[green]gate: PASS: no drop beyond {cmp.max_drop_pp:g} pp at {cmp.confidence:g} confidence "
        f"(P = {cmp.paired.p_drop_exceeds:.3f})[/green]"
    )
    return EXIT_OK
