"""`thrifty router`: convert labeled data, train, calibrate and evaluate routers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from thrifty.routing.labeled import LabeledDataError

if TYPE_CHECKING:
    from thrifty.routing.labeled import Example
    from thrifty.routing.learned import RouterArtifact


def _cost_and_confidence(command: Callable[..., Any]) -> Callable[..., Any]:
    """The --max-cost and --confidence options that `train` and `calibrate` share."""
    command = click.option(
        "--confidence",
        default=None,
        type=float,
        help="meet the target in this share of bootstrap resamples (e.g. 0.8) instead of on the data as is",
    )(command)
    return click.option(
        "--max-cost",
        default=None,
        type=float,
        help="cap the setting's cost at this fraction of the reference model's (e.g. 0.3)",
    )(command)


def _load(path: str) -> list[Example]:
    from thrifty.routing.labeled import load_labeled

    try:
        return load_labeled(path)
    except LabeledDataError as exc:
        raise click.ClickException(str(exc)) from None


def _artifact(path: str) -> RouterArtifact:
    from thrifty.routing.learned import ArtifactError, load_artifact

    try:
        return load_artifact(path)
    except ArtifactError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("router")
def router() -> None:
    """Train, calibrate and evaluate the learned router on labeled data.

    Labeled data is JSONL, one prompt a line, with every candidate model's quality (0..1)
    and cost (USD): {"id", "prompt" | "messages", "candidates": {model: {"quality", "cost"}}}.
    """


@router.command("convert")
@click.option(
    "--from",
    "fmt",
    required=True,
    type=click.Choice(["routerbench", "routellm-mmlu", "routellm-gsm8k", "routellm-mtbench"]),
)
@click.argument("source", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="labeled JSONL to write")
@click.option(
    "--price",
    "prices",
    multiple=True,
    metavar="MODEL=IN,OUT",
    help="USD per 1M tokens, for data without costs",
)
def convert_cmd(fmt: str, source: str, output: str, prices: tuple[str, ...]) -> None:
    """Convert a RouterBench or RouteLLM file (or MMLU folder) to labeled JSONL."""
    from thrifty.routing.datasets import convert, parse_price
    from thrifty.routing.labeled import write_labeled

    try:
        table = dict(parse_price(p) for p in prices)
        conv = convert(fmt, source, table)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    n = write_labeled(conv.examples, output)
    click.echo(f"wrote {n} examples to {output}")
    if conv.problems:
        click.echo(f"{len(conv.problems)} row(s) skipped:\n{conv.report()}", err=True)
        if not n:
            sys.exit(1)


@router.command("train")
@click.option("--data", required=True, type=click.Path(exists=True), help="labeled JSONL (training split)")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="artifact to write (router.pkl)"
)
@click.option(
    "--candidates", default=None, help="comma-separated models (default: all present on every line)"
)
@click.option(
    "--target",
    default=0.95,
    show_default=True,
    type=float,
    help="quality target (fraction of the best model) to calibrate for",
)
@click.option(
    "--reference", default=None, help="calibrate against this model's quality (default: the best one)"
)
@click.option(
    "--features",
    "feature_set",
    default="full",
    show_default=True,
    type=click.Choice(["full", "structure"]),
    help="full: MiniLM embedding + structure; structure: cheap structural features only",
)
@click.option(
    "--repeats",
    default=None,
    type=int,
    help="repeated cross-validation splits (default: 5 for small sets, fewer for large)",
)
@click.option(
    "--blend-by",
    default="loss",
    show_default=True,
    type=click.Choice(["loss", "target"]),
    help="weigh the nearest-neighbour vote in by each candidate's log loss, or by the cheapest "
    "out-of-fold calibration reaching --target (one weight for all)",
)
@_cost_and_confidence
@click.option("--scorer", is_flag=True, help="train a cascade scorer on (prompt, recorded response) instead")
@click.option(
    "--cascade",
    "stages",
    default=None,
    metavar="A,B>C",
    help="train a cascade on answer signals instead: stages of models asked at once, '>' between "
    "stages (e.g. 'gpt-4o-mini,claude-3-haiku>gpt-4o'); the threshold is calibrated for --target. "
    "'auto': the stages are chosen from the data (thrifty.routing.cascade_search)",
)
@click.option(
    "--policy",
    default="likeliest",
    show_default=True,
    type=click.Choice(["cheapest", "likeliest"]),
    help="with --cascade: the cheapest threshold reaching --target out of fold, or the one meeting "
    "--target and --max-cost in the most bootstrap resamples",
)
@click.option(
    "--kind",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "code", "choice", "numeric", "text"]),
    help="with --cascade: how answers are compared (code runs in the sandbox)",
)
@click.option("--prior", is_flag=True, help="with --cascade: the scorers also read a prompt-only router's P(good) (with auto: candidates with and without it)")
def train_cmd(
    data: str,
    output: str,
    candidates: str | None,
    target: float,
    reference: str | None,
    feature_set: str,
    repeats: int | None,
    blend_by: str,
    max_cost: float | None,
    confidence: float | None,
    scorer: bool,
    stages: str | None,
    kind: str,
    prior: bool,
    policy: str,
) -> None:
    """Train a router (or a cascade scorer, or a cascade on answer signals) and write a versioned artifact."""
    from thrifty.routing.calibrate import describe
    from thrifty.routing.features import FeatureSpec

    spec = FeatureSpec() if feature_set == "full" else FeatureSpec(embedding=None)

    examples = _load(data)
    names = [c.strip() for c in candidates.split(",")] if candidates else None
    if stages is not None:
        _train_cascade(examples, stages, kind, prior, output, target, reference, max_cost, confidence, policy)
        return
    try:
        if scorer:
            from thrifty.routing.cascade import train_scorer
            from thrifty.routing.labeled import common_candidates

            art, _ = train_scorer(examples, names or common_candidates(examples), spec=spec)
        else:
            from thrifty.routing.learned import train

            art = train(
                examples,
                candidates=names,
                target=target,
                reference=reference,
                spec=spec,
                repeats=repeats,
                max_cost=max_cost,
                confidence=confidence,
                blend_by=blend_by,
            )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    art.save(output)
    click.echo(
        f"wrote {art.kind} {output}: {art.n_examples} examples, candidates {', '.join(art.candidates)}"
    )
    click.echo(f"data sha256 {art.data_hash[:16]}..., scikit-learn {art.sklearn_version}")
    if not scorer:
        click.echo("out-of-fold calibration: " + describe(art.calibration, target))


@router.command("calibrate")
@click.option("--router", "router_path", default="router.pkl", show_default=True, type=click.Path())
@click.option("--data", required=True, type=click.Path(exists=True), help="labeled validation JSONL")
@click.option(
    "--target", default=0.99, show_default=True, type=float, help="fraction of the best model's quality"
)
@click.option(
    "--reference",
    default=None,
    help="the model whose quality the target is a fraction of (default: the best)",
)
@_cost_and_confidence
@click.option(
    "--write",
    "write_to",
    default=None,
    type=click.Path(dir_okay=False),
    help="save the artifact with this calibration",
)
def calibrate_cmd(
    router_path: str,
    data: str,
    target: float,
    reference: str | None,
    max_cost: float | None,
    confidence: float | None,
    write_to: str | None,
) -> None:
    """Pick the setting that meets a quality target on validation data and state its cost."""
    from thrifty.routing.calibrate import apply, calibrate, describe
    from thrifty.routing.cascade_eval import is_cascade_artifact

    if is_cascade_artifact(router_path):
        _calibrate_cascade(router_path, data, target, max_cost, confidence, write_to)
        return
    art = _artifact(router_path)
    examples = _load(data)
    p = art.predict([ex.text for ex in examples])
    if reference is not None and reference not in art.candidates:
        raise click.ClickException(f"--reference {reference!r} is not one of the router's candidates")
    cal = calibrate(art, examples, target, p=p, reference=reference, max_cost=max_cost, confidence=confidence)
    click.echo(describe(cal, target))
    if cal is None or not cal.met:
        sys.exit(1)
    click.echo(f"config: route: {{router: {router_path}, policy: {cal.policy}, knob: {cal.knob:g}}}")
    if write_to:
        apply(art, cal, examples, p).save(write_to)
        click.echo(f"wrote {write_to}")


@router.command("eval")
@click.option("--router", "router_path", default="router.pkl", show_default=True, type=click.Path())
@click.option("--data", required=True, type=click.Path(exists=True), help="labeled test JSONL")
@click.option(
    "--plot", "plot_path", default="router_eval.png", show_default=True, type=click.Path(dir_okay=False)
)
@click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="also write the figures as JSON",
)
def eval_cmd(router_path: str, data: str, plot_path: str, json_path: str | None) -> None:
    """Cost-quality of the router vs each model, random routing and the oracle (table + PNG)."""
    from rich.console import Console

    from thrifty.routing.cascade_eval import evaluate_cascade, is_cascade_artifact
    from thrifty.routing.evaluate import evaluate, plot, render_table

    examples = _load(data)
    try:
        if is_cascade_artifact(router_path):
            rep = evaluate_cascade(_cascade(router_path), examples)
        else:
            rep = evaluate(_artifact(router_path), examples)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    Console().print(render_table(rep))
    plot(rep, plot_path, title=f"{Path(data).name}: router vs single models")
    click.echo(f"plot: {plot_path}")
    if json_path:
        Path(json_path).write_text(json.dumps(rep.to_dict(), indent=2))


# -- cascades on answer signals (thrifty.routing.cascade_eval) --------------------------------


def _cascade(path: str) -> Any:
    from thrifty.routing.cascade_eval import load_cascade
    from thrifty.routing.learned import ArtifactError

    try:
        return load_cascade(path)
    except ArtifactError as exc:
        raise click.ClickException(str(exc)) from None


def _train_cascade(
    examples: list[Example],
    stages: str,
    kind: str,
    prior: bool,
    output: str,
    target: float,
    reference: str | None,
    max_cost: float | None,
    confidence: float | None,
    policy: str = "likeliest",
) -> None:
    from thrifty.routing.calibrate import describe
    from thrifty.routing.cascade_eval import CascadeConfig, parse_stages, train_cascade

    try:
        if stages.strip() == "auto":
            from thrifty.routing.cascade_search import search_cascade

            click.echo("candidate cascades, out of fold:")
            art = search_cascade(
                examples, target=target, max_cost=max_cost, reference=reference, kind=kind, policy=policy,
                priors=(False, True) if prior else (False,), log=click.echo,
            ).best.art
            config = art.config
        else:
            config = CascadeConfig(parse_stages(stages), kind)
            art, _ = train_cascade(
                examples, config, reference=reference, target=target, max_cost=max_cost, confidence=confidence,
                prior=prior, policy=policy,
            )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    art.save(output)
    click.echo(f"wrote cascade {output}: {art.n_examples} examples, stages {config.describe()}")
    click.echo(f"data sha256 {art.data_hash[:16]}..., scikit-learn {art.sklearn_version}")
    click.echo("out-of-fold calibration of the accept threshold: " + describe(art.calibration, target))


def _calibrate_cascade(
    path: str, data: str, target: float, max_cost: float | None, confidence: float | None, write_to: str | None
) -> None:
    from dataclasses import replace

    from thrifty.routing.calibrate import describe
    from thrifty.routing.cascade_eval import calibrate_on

    art = _cascade(path)
    try:
        cal = calibrate_on(art, _load(data), target, max_cost=max_cost, confidence=confidence)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(describe(cal, target))
    if not cal.met:
        sys.exit(1)
    click.echo(f"config: route: {{cascade: {{signals: {path}, accept: {cal.knob:g}}}}}")
    if write_to:
        replace(art, calibration=cal).save(write_to)
        click.echo(f"wrote {write_to}")
