"""`thrifty compress`: see what context compression keeps, and pick its ratio on your own prompts.

- `thrifty compress try PROMPT` prints one RAG prompt as the gateway would send it at a ratio,
  with the tokens before and after (or why it was left alone);
- `thrifty compress sweep DATA.jsonl` runs the compressor over your prompts at several ratios
  and reports, per ratio, the tokens saved and how many prompts still hold every text you said
  must survive (`keep`), so the ratio in the config is one you measured, not one we guessed;
- `thrifty compress report` (also `thrifty compress-report`): the token levers' figures per
  route, from the ledger.

Nothing here calls a model: the compressor is extractive and runs locally (the embedded
MiniLM, or no model at all with `--lexical-only`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from thrifty.compress.reports import prefix_cache_hit_rate, tokens_saved_by_route, truncation_by_route
from thrifty.ledger.store import open_store

__all__ = ["SweepLine", "SweepRow", "compress", "compress_report", "read_sweep_lines", "sweep_rows"]

#: The ratios `sweep` tries when none are given.
DEFAULT_RATIOS = (0.2, 0.3, 0.35, 0.4, 0.5, 0.6)
#: Weights that leave the embedder out: lexical and structural features only (much faster).
LEXICAL_ONLY = {"embedding": 0.0, "passage": 0.0}


@dataclass(frozen=True)
class SweepLine:
    """One prompt of a sweep: the last user message's text parts and what must survive."""

    parts: list[str]
    keep: list[str]


@dataclass(frozen=True)
class SweepRow:
    """The figures of one ratio over every prompt of a sweep."""

    ratio: float
    prompts: int
    compressed: int
    reduction: float
    kept_all: float
    kept_texts: float


def _parts_of(row: dict[str, Any]) -> list[str]:
    """The text parts of a line: `prompt` (a string), or the last user message of `messages`."""
    if isinstance(row.get("prompt"), str):
        return [row["prompt"]]
    messages = row.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return [content]
                if isinstance(content, list):
                    return [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
    raise ValueError('needs "prompt" (a string) or "messages" with a user message')


def read_sweep_lines(path: Path) -> list[SweepLine]:
    """Read a sweep file: JSON lines of `{"prompt" | "messages", "keep": [text, ...]}`."""
    lines: list[SweepLine] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            if not isinstance(row, dict):
                raise ValueError("is not a JSON object")
            keep = row.get("keep", [])
            if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
                raise ValueError('"keep" must be a list of strings')
            lines.append(SweepLine(_parts_of(row), keep))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise click.BadParameter(f"line {number}: {exc}", param_hint="DATA") from None
    if not lines:
        raise click.BadParameter("no prompts in the file", param_hint="DATA")
    return lines


def sweep_rows(
    lines: list[SweepLine], ratios: list[float], weights: dict[str, float], min_tokens: int, progress: bool = False
) -> list[SweepRow]:
    """Compress every line at every ratio; a prompt the compressor leaves alone counts as sent whole."""
    from tqdm import tqdm

    from thrifty.compress.context import ContextSettings, compress_parts
    from thrifty.embed import shared_embedder
    from thrifty.ledger.tokens import count_text

    embedder = None if weights == LEXICAL_ONLY else shared_embedder()
    stats: dict[float, list[tuple[bool, float, bool, float]]] = {r: [] for r in ratios}
    for line in tqdm(lines, desc="compressing", unit="prompt", disable=not progress):
        before = sum(count_text(p) for p in line.parts)
        for ratio in ratios:
            settings = ContextSettings(enabled=True, ratio=ratio, min_tokens=min_tokens, weights=weights)
            outcome = compress_parts(line.parts, settings, embedder)
            texts = outcome.texts or line.parts
            after = sum(count_text(t) for t in texts)
            joined = "\n".join(texts)
            kept = [k in joined for k in line.keep]
            stats[ratio].append(
                (outcome.texts is not None, 1 - after / before if before else 0.0, all(kept),
                 sum(kept) / len(kept) if kept else 1.0)
            )
    rows = []
    for ratio in ratios:
        values = stats[ratio]
        n = len(values)
        rows.append(SweepRow(
            ratio, n, sum(v[0] for v in values), sum(v[1] for v in values) / n,
            sum(v[2] for v in values) / n, sum(v[3] for v in values) / n,
        ))
    return rows


@click.group("compress")
def compress() -> None:
    """See what context compression keeps, and pick its ratio on your own prompts.

    \b
    Examples:
      thrifty compress try prompt.txt --ratio 0.35
      thrifty compress sweep rag.jsonl --target 0.95 --plot sweep.png
      thrifty compress report --store sqlite:///thrifty.db
    """


@compress.command("try")
@click.argument("prompt", type=click.File("r", encoding="utf-8"))
@click.option("--ratio", type=click.FloatRange(0, 1, min_open=True), default=0.35, show_default=True,
              help="keep at most this share of the context's tokens")
@click.option("--lexical-only", is_flag=True, help="no embedding model: lexical and structural features only")
def try_prompt(prompt: Any, ratio: float, lexical_only: bool) -> None:
    """Print PROMPT (a file, or - for stdin) as it would be sent: the context compressed, the
    question (after the last "Question:" line, else a final paragraph that asks) untouched."""
    from thrifty.compress.context import ContextSettings, compress_parts
    from thrifty.embed import shared_embedder

    text = prompt.read()
    weights = LEXICAL_ONLY if lexical_only else {}
    settings = ContextSettings(enabled=True, ratio=ratio, min_tokens=0, weights=weights)
    outcome = compress_parts([text], settings, None if lexical_only else shared_embedder())
    if outcome.texts is None:
        click.echo(text)
        click.echo(f"-- left as sent: {outcome.reason}", err=True)
        return
    click.echo(outcome.texts[0])
    saved = 1 - outcome.tokens_after / outcome.tokens_before
    click.echo(f"-- {outcome.tokens_before:,} -> {outcome.tokens_after:,} tokens ({saved:.1%} fewer)", err=True)


@compress.command("sweep")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ratios", default=",".join(str(r) for r in DEFAULT_RATIOS), show_default=True,
              help="comma-separated ratios to try")
@click.option("--target", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="share of prompts that must keep every `keep` text")
@click.option("--min-tokens", type=int, default=400, show_default=True,
              help="leave contexts shorter than this alone (the config's min_tokens)")
@click.option("--lexical-only", is_flag=True, help="no embedding model: lexical and structural features only")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="write a PNG of kept against saved")
def sweep(data: Path, ratios: str, target: float, min_tokens: int, lexical_only: bool, plot: Path | None) -> None:
    """Measure compression on DATA: JSON lines of {"prompt": "...", "keep": ["text that must
    survive", ...]} (or "messages" instead of "prompt": the last user message is used).

    For each ratio: the share of tokens saved, the share of prompts that keep every `keep`
    text, and the share of `keep` texts kept; then the smallest ratio (the most saving) whose
    prompts keep everything in at least --target of them. The figure is only as good as the
    sample: choose the ratio on one part of your prompts and check it on another.
    """
    try:
        grid = sorted({float(r) for r in ratios.split(",") if r.strip()})
    except ValueError:
        raise click.BadParameter(f"{ratios!r} is not a list of numbers", param_hint="--ratios") from None
    if not grid or not all(0 < r <= 1 for r in grid):
        raise click.BadParameter("each ratio must be in (0, 1]", param_hint="--ratios")
    lines = read_sweep_lines(data)
    rows = sweep_rows(lines, grid, LEXICAL_ONLY if lexical_only else {}, min_tokens, progress=sys.stderr.isatty())
    click.echo(f"{len(lines)} prompts, {sum(len(line.keep) for line in lines)} texts to keep")
    click.echo(f"{'ratio':>6} {'compressed':>10} {'fewer tokens':>12} {'kept all':>9} {'texts kept':>10}")
    for r in rows:
        click.echo(f"{r.ratio:>6.2f} {r.compressed:>10} {r.reduction:>12.1%} {r.kept_all:>9.1%} {r.kept_texts:>10.1%}")
    good = [r for r in rows if r.kept_all >= target]
    if good:
        best = min(good, key=lambda r: r.ratio)
        click.echo(f"\nsmallest ratio keeping everything in >= {target:.0%} of prompts: {best.ratio:g} "
                   f"({best.reduction:.1%} fewer tokens, {best.kept_all:.1%} keep all)\n"
                   f"  routes: {{NAME: {{compress: {{enabled: true, context: {{enabled: true, ratio: {best.ratio:g}}}}}}}}}")
    else:
        click.echo(f"\nno ratio tried keeps everything in >= {target:.0%} of prompts; try larger ratios, "
                   "or leave compression off for this traffic")
    if plot:
        _plot(rows, plot, target)
        click.echo(f"plot written to {plot}")


def _plot(rows: list[SweepRow], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r.reduction for r in rows], [r.kept_all for r in rows], marker="o", label="keep every text")
    ax.plot([r.reduction for r in rows], [r.kept_texts for r in rows], marker=".", ls="--", label="texts kept")
    for r in rows:
        ax.annotate(f"{r.ratio:g}", (r.reduction, r.kept_all), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.axhline(target, color="grey", lw=0.5)
    ax.set_xlabel("fewer tokens")
    ax.set_ylabel("share of prompts")
    ax.set_title("Context compression by ratio")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


compress.add_command(compress_report, "report")
