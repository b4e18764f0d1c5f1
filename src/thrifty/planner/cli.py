"""`thrifty plan`: the monthly bill per lever stack, self-hosting options, and a recommendation.

The workload comes from a YAML file, from the ledger or an audit log (`--traffic`), and from
flags, each overriding the one before. Impossible workloads exit with a message, not a number.
"""

from __future__ import annotations

from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from thrifty.planner.catalog import load_catalog
from thrifty.planner.plan import ASSUMPTIONS, Plan, make_plan
from thrifty.planner.sanity import check_claim
from thrifty.planner.workload import PlanError, load_workload, workload_from

#: flag name -> (workload path, type)
_FLAGS: dict[str, tuple[tuple[str, ...], type]] = {
    "requests_per_day": (("requests_per_day",), float),
    "requests_per_month": (("requests_per_month",), float),
    "input_tokens": (("input_tokens",), float),
    "output_tokens": (("output_tokens",), float),
    "peak_to_mean": (("peak_to_mean",), float),
    "model": (("model",), str),
    "provider": (("provider",), str),
    "input_price": (("input_price",), float),
    "output_price": (("output_price",), float),
    "price_per_request": (("price_per_request",), float),
    "latency_ms": (("latency_ms",), float),
    "cache_hit_rate": (("levers", "cache_hit_rate"), float),
    "routed_share": (("levers", "routed_share"), float),
    "route_model": (("levers", "route_model"), str),
    "compression": (("levers", "compression"), float),
    "output_cap": (("levers", "output_cap"), float),
    "batch_share": (("levers", "batch_share"), float),
    "selfhost_model": (("selfhost", "model"), str),
    "kv_precision": (("selfhost", "kv_precision"), str),
    "gpu_price": (("selfhost", "price"), str),
}


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _usd(v: float) -> str:
    return f"${v:,.0f}" if abs(v) >= 100 else f"${v:,.2f}"


def print_traffic(s: dict[str, Any], console: Console) -> None:
    i, o = s["input_tokens"], s["output_tokens"]
    console.print(
        f"[bold]Measured traffic[/] ({s['source']}): {s['requests']:,} requests over {s['days']:.1f} days "
        f"({s['requests_per_day']:,.0f}/day, {s['errors']:,} errors left out); input tokens mean {i['mean']:,.0f}, "
        f"p50 {i['p50']:,.0f}, p90 {i['p90']:,.0f}; output mean {o['mean']:,.0f}, p50 {o['p50']:,.0f}, "
        f"p90 {o['p90']:,.0f}; cache hits {s['cache_hit_rate']:.1%}, routed {s['routed_share']:.1%}"
    )


def print_plan(plan: Plan, console: Console, top: int = 8) -> None:
    w, b = plan.workload, plan.bill
    console.print(f"[bold]Workload[/] ({w.source}): {w.requests_per_day:,.0f} requests/day of "
                  f"{w.input_tokens:,.0f} in + {w.output_tokens:,.0f} out tokens on {w.model}, "
                  f"peak {w.peak_ratio:.2f}x the mean, latency target {w.latency_ms:g} ms/token")  # fmt: skip
    rates = (
        f"${b.rates.input:g} / ${b.rates.output:g} per 1M tokens ({b.rates.source})"
        if b.rates
        else "per request"
    )
    t = Table(title=f"API bill per month: {rates}")
    t.add_column("lever")
    t.add_column("saves", justify="right")
    t.add_column("bill after", justify="right")
    t.add_column("note")
    t.add_row("no lever", "", _usd(b.base), "")
    for s in b.steps:
        t.add_row(s.lever, _usd(s.saved), _usd(s.bill_after), s.note)
    console.print(t)
    if plan.selfhost is None:
        console.print(f"[yellow]Self-hosting:[/] {plan.selfhost_error}")
    else:
        sh = plan.selfhost
        t = Table(
            title=f"Self-hosting {sh.model.name} (cheapest {top} of {len(sh.options)} options; catalog of {plan.catalog_as_of})"
        )
        for col in ("option", "batch", "ms/token", "tok/s per replica", "GPUs at peak", "mean util.", "per month",
                    "$/1M out", "break-even req/day"):  # fmt: skip
            t.add_column(col, justify="left" if col == "option" else "right")
        for o in sorted(sh.options, key=lambda o: o.total)[:top]:
            be = "never" if o.breakeven_requests_per_day is None else f"{o.breakeven_requests_per_day:,.0f}"
            t.add_row(o.label, str(o.batch), f"{o.tpot_ms:.1f}", f"{o.replica_tokens_per_s:,.0f}", str(o.gpus_at_peak),
                      f"{o.utilization:.0%}", _usd(o.total), f"{o.cost_per_m_output:.2f}", be)  # fmt: skip
        console.print(t)
        reasons: dict[str, list[str]] = {}
        for skip in sh.skipped:
            reasons.setdefault(skip.reason, []).append(f"{skip.gpu} {skip.precision}")
        for reason, which in reasons.items():
            console.print(f"  [dim]left out ({', '.join(which)}): {reason}[/]")
    for f in plan.flags:
        console.print(f"[red]flagged:[/] {f.what}: {f.message}")
    e = plan.efficiency
    console.print(f"[dim]efficiency (calibrated on published measurements): weights {e.bandwidth:.2f} and KV "
                  f"{e.kv_bandwidth:.2f} of peak bandwidth, {e.compute:.2f} of peak FLOPs, "
                  f"{e.allreduce_s * 1e6:.0f} µs per all-reduce[/]")  # fmt: skip
    console.print(f"[bold]Recommendation:[/] {plan.recommendation}")
    console.print("[dim]assumptions: " + "; ".join(ASSUMPTIONS) + "[/]")


@click.command("plan")
@click.argument("workload_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--traffic",
    "traffic",
    metavar="LOG",
    help="Measure the workload from a ledger (path or postgresql:// URL) or an audit log.",
)
@click.option("--requests-per-day", type=float)
@click.option("--requests-per-month", type=float)
@click.option("--input-tokens", type=float, help="Mean input tokens per request.")
@click.option("--output-tokens", type=float, help="Mean output tokens per request.")
@click.option("--peak-to-mean", type=float, help="Peak request rate over the mean (default 2).")
@click.option("--model", help="The API model (priced by genai-prices).")
@click.option("--provider")
@click.option("--input-price", type=float, help="USD per 1M input tokens (overrides genai-prices).")
@click.option("--output-price", type=float, help="USD per 1M output tokens.")
@click.option("--price-per-request", type=float, help="USD per request, instead of token prices.")
@click.option("--latency-ms", type=float, help="Slowest acceptable time per output token (default 50).")
@click.option("--cache-hit-rate", type=float)
@click.option("--routed-share", type=float)
@click.option("--route-model")
@click.option("--compression", type=float, help="Share of input tokens compression removes.")
@click.option("--output-cap", type=float, help="Share of output tokens the cap cuts.")
@click.option(
    "--batch-share", type=float, help="Share of requests that can wait for the batch discount / spot."
)
@click.option("--selfhost-model", help="Open-weight model to size (see the catalog).")
@click.option("--gpu", "gpus", multiple=True, help="Only these GPUs of the catalog (repeatable).")
@click.option(
    "--precision", "precisions", multiple=True, help="Only these precisions (fp16 fp8 int8 int4 fp4)."
)
@click.option("--kv-precision")
@click.option("--gpu-price", type=click.Choice(["on_demand", "reserved"]))
@click.option(
    "--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False), help="An edited GPU catalog."
)
@click.option("--claim", "claims", multiple=True, metavar="MODEL:GPU:TOK_S[:N[:PREC]]",
              help="Check a published single-stream speed against the bandwidth bound (repeatable).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(workload_file: str | None, traffic: str | None, gpus: tuple[str, ...], precisions: tuple[str, ...],
         catalog_path: str | None, claims: tuple[str, ...], as_json: bool, **flags: Any) -> None:  # fmt: skip
    """Plan the bill: the API cost of a workload with each lever, and whether self-hosting beats it.

    Give the workload as WORKLOAD_FILE (YAML with the flag names; levers under `levers:`, the
    open-weight model under `selfhost:`), measure it with --traffic, or pass flags; later ones win.
    """
    data: dict[str, Any] = {}
    summary: dict[str, Any] | None = None
    try:
        if workload_file:
            data = load_workload(workload_file).model_dump(exclude_unset=True)
            data["source"] = workload_file
        if traffic:
            from thrifty.planner.traffic import measure

            try:
                measured = measure(traffic)
            except FileNotFoundError:
                raise click.ClickException(f"no such log: {traffic}") from None
            except Exception as exc:  # a database that cannot be opened, a file that is not a log
                raise click.ClickException(f"cannot read {traffic}: {exc}") from None
            if not measured.requests:
                raise click.ClickException(f"{traffic} has no successful requests to plan from")
            data = _merge(data, measured.workload_fields())
            summary = measured.summary()
        for name, value in flags.items():
            if value is not None:
                if name in ("requests_per_day", "requests_per_month"):  # a flag replaces the other unit
                    data.pop("requests_per_day", None)
                    data.pop("requests_per_month", None)
                _set(data, _FLAGS[name][0], value)
        if gpus:
            _set(data, ("selfhost", "gpus"), list(gpus))
        if precisions:
            _set(data, ("selfhost", "precisions"), list(precisions))
        if "requests_per_day" not in data and "requests_per_month" not in data:
            raise click.UsageError(
                "give --requests-per-day (or --requests-per-month), a WORKLOAD_FILE or --traffic"
            )
        workload = workload_from(data)
        catalog = load_catalog(catalog_path) if catalog_path else load_catalog()
        result = make_plan(workload, catalog)
        for claim in claims:
            parts = claim.split(":")
            if len(parts) < 3:
                raise click.BadParameter(
                    f"{claim!r}: expected MODEL:GPU:TOKENS_PER_S[:N_GPUS[:PRECISION]]", param_hint="--claim"
                )
            n = int(parts[3]) if len(parts) > 3 else 1
            flag = check_claim(
                catalog, parts[0], parts[1], n, float(parts[2]), parts[4] if len(parts) > 4 else None
            )
            if flag:
                result.flags.append(flag)
    except (PlanError, KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    if as_json:
        out = result.to_dict()
        if summary is not None:
            out["traffic"] = summary
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        console = Console()
        if summary is not None:
            print_traffic(summary, console)
        print_plan(result, console)


__all__ = ["plan", "print_plan", "print_traffic"]
