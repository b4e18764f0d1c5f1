"""Show an `Audit`: a terminal summary (rich tables) and a self-contained HTML report.

The HTML file carries its data and the chart library (Chart.js, MIT, vendored from npm in
`thrifty/server/static/chart.umd.js`) inline, so it opens offline and can be mailed around.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from thrifty.audit.measure import MeasureResult
from thrifty.audit.waste import Audit


def usd(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    return f"${v:,.4f}"


def pct(v: float) -> str:
    return f"{v:.1%}"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts is not None else "?"


def print_summary(audit: Audit, console: Console | None = None, top: int = 8) -> None:
    """Print the audit as rich tables."""
    con = console or Console()
    a = audit
    con.print(
        f"[bold]thrifty audit[/bold] of {a.source} ({a.format}): {a.rows:,} requests, "
        f"{_when(a.first_ts)} to {_when(a.last_ts)}, spend [bold]{usd(a.total_cost)}[/bold]"
    )
    if a.bad_lines:
        listed = ", ".join(str(n) for n, _ in a.bad_examples[:10])
        more = " ..." if a.bad_lines > 10 else ""
        con.print(f"[yellow]{a.bad_lines:,} bad lines skipped[/yellow] (lines {listed}{more}); first: {a.bad_examples[0][1]}")
    if a.unpriced_rows:
        con.print(
            f"[yellow]{a.unpriced_rows:,} requests have no cost and no catalog price[/yellow] "
            f"(models: {', '.join(a.unknown_models[:5])}); counted at $0"
        )
    for title, rows in (("model", a.by_model), ("feature", a.by_feature), ("route", a.by_route), ("key", a.by_key)):
        if len(rows) <= 1 and rows and rows[0]["name"] == "(none)":
            continue
        t = Table(title=f"Cost by {title}", title_justify="left")
        for col, just in ((title, "left"), ("requests", "right"), ("cost", "right"), ("share", "right"),
                          ("in tok", "right"), ("out tok", "right"), ("errors", "right")):  # fmt: skip
            t.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
        for r in rows[:top]:
            t.add_row(r["name"], f"{r['requests']:,}", usd(r["cost"]), pct(r["share"]),
                      f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", f"{r['errors']:,}")  # fmt: skip
        con.print(t)
    t = Table(title="Top cost drivers (model, route, feature, key)", title_justify="left")
    for col in ("model", "route", "feature", "key", "requests", "cost", "share"):
        t.add_column(col, justify="right" if col in ("requests", "cost", "share") else "left", overflow="fold")
    for d in a.top_drivers[:top]:
        t.add_row(d["model"], d["route"], d["feature"], d["key"], f"{d['requests']:,}", usd(d["cost"]), pct(d["share"]))
    con.print(t)
    t = Table(title="Waste", title_justify="left")
    for col in ("finding", "requests", "cost", "note"):
        t.add_column(col, justify="right" if col in ("requests", "cost") else "left")
    for name, note, w in _waste_lines(a):
        t.add_row(name, f"{w.get('requests', 0):,}", usd(w.get("cost", 0.0)), note)
    con.print(t)
    near = a.waste["near_duplicates"]
    if near.get("accepted_examples") or near.get("refused_examples"):
        t = Table(title="Near-duplicates: the parts the verifier compared", title_justify="left")
        for col in ("verdict", "earlier question", "later question", "cosine", "verifier"):
            t.add_column(col, justify="right" if col in ("cosine", "verifier") else "left", overflow="fold")
        for verdict, rows in (("accepted", near["accepted_examples"]), ("refused", near["refused_examples"])):
            for e in rows:
                label = verdict if verdict == "accepted" else f"refused: {e['reason']}"
                t.add_row(label, e["compared_a"][:120], e["compared_b"][:120], f"{e['cosine']:.3f}", f"{e['score']:.3f}")
        con.print(t)
    t = Table(title="What each lever would save on this traffic (some overlap)", title_justify="left")
    for col in ("lever", "basis", "saving", "share", "finding"):
        t.add_column(col, justify="right" if col in ("saving", "share") else "left")
    for lv in a.levers:
        t.add_row(lv.lever, lv.basis, usd(lv.saving), pct(lv.share), lv.finding)
    con.print(t)
    con.print("[bold]How each was obtained[/bold]")
    for lv in a.levers:
        con.print(f"  [cyan]{lv.lever}[/cyan] ({lv.basis}): {lv.assumptions}")
        if lv.next_step:
            con.print(f"    to measure it: {lv.next_step}")
    share = a.saving_total / a.total_cost if a.total_cost else 0.0
    con.print(
        f"[bold green]Measured and verified saving: ~{usd(a.saving_total)} ({pct(share)})[/bold green] of this spend "
        "(each lever acting on what the others leave; dedup counted under cache)"
    )
    assumed = a.saving_assumed
    assumed_share = assumed / a.total_cost if a.total_cost else 0.0
    names = ", ".join(lv.lever for lv in a.levers if lv.basis == "assumed" and lv.saving > 0)
    con.print(
        f"[yellow]Assumed, not in that total: ~{usd(assumed)} ({pct(assumed_share)}) more[/yellow]"
        + (f" from {names}, if their assumptions hold" if names else "")
    )
    tk = a.tasks
    line = f"cost per request {usd(tk['cost_per_request'])}"
    if tk["tasks"]:
        line += f"; {tk['tasks']:,} tasks, cost per task {usd(tk['cost_per_task'])}"
    if tk["with_outcome"]:
        line += (
            f"; {tk['successful']:,} of {tk['with_outcome']:,} tasks with an outcome succeeded, "
            f"cost per successful task {usd(tk['cost_per_successful_task'])}"
        )
    con.print(line)
    lat = a.latency_ms
    if lat.get("p50") is not None:
        con.print(f"latency p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 {lat['p99']:.0f} ms")
    if a.ledger_savings:
        con.print("saved by thrifty (ledger): " + ", ".join(f"{k} {usd(v)}" for k, v in a.ledger_savings.items()))


def _waste_lines(a: Audit) -> list[tuple[str, str, dict[str, Any]]]:
    w = a.waste
    near = w["near_duplicates"]
    sysp = w["repeated_system_prompt"]
    return [
        ("exact duplicates", "same request body seen before", w["exact_duplicates"]),
        ("near-duplicates", f"verifier accepted {near['matches']:,} of {near['sampled']:,} sampled questions "
         f"({near['candidates']:,} candidate pairs checked); {near['status']}",
         {"requests": near["estimated_requests"], "cost": near["estimated_cost"]}),
        ("retries", f"same key and request within {w['retries']['window_s']:.0f}s; "
         f"{w['retries']['after_error']:,} after an error or truncation", w["retries"]),
        ("repeated system prompt", f"{sysp['tokens']:,} tokens sent again", sysp),
        ("truncated outputs", "finish_reason = length", w["truncated"]),
        ("long outputs", f"over {w['long_outputs']['factor']:g}x the median; "
         f"excess {usd(w['long_outputs']['excess_cost'])}", w["long_outputs"]),
        ("errors", "failed calls that were billed", w["errors"]),
    ]  # fmt: skip


def chart_js() -> str:
    """The vendored Chart.js UMD build (with its MIT licence header)."""
    return resources.files("thrifty.server").joinpath("static/chart.umd.js").read_text(encoding="utf-8")


def _safe_script(text: str) -> str:
    return text.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def render_html(audit: Audit, title: str = "thrifty audit") -> str:
    """The report as one HTML document with its data and chart library inline."""
    template = resources.files("thrifty.audit").joinpath("report.html").read_text(encoding="utf-8")
    data = audit.to_dict()
    data["saving_total"] = audit.saving_total
    data["saving_assumed"] = audit.saving_assumed
    data["waste_lines"] = [
        {"finding": n, "note": note, "requests": w.get("requests", 0), "cost": w.get("cost", 0.0)}
        for n, note, w in _waste_lines(audit)
    ]
    data["period"] = f"{_when(audit.first_ts)} to {_when(audit.last_ts)} UTC"
    payload = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return (
        template.replace("{{TITLE}}", title)
        .replace("/*CHART_JS*/", _safe_script(chart_js()))
        .replace("/*AUDIT_DATA*/null", _safe_script(payload))
    )


def write_html(audit: Audit, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(audit))


def _ci(d: dict[str, float], fmt: Any) -> str:
    return f"{fmt(d['mean'])} [{fmt(d['low'])}, {fmt(d['high'])}]" if d else "-"


def print_measure(res: MeasureResult, con: Console) -> None:
    """The measured replay of a sample: cost and quality with 95% bootstrap intervals."""
    con.print(
        f"[bold]Measured on a sample[/bold]: {res.sampled:,} of {res.eligible:,} logged requests with an answer "
        f"replayed through the candidate; {res.answered:,} answered, {res.failed:,} failed; judge {res.judge}: "
        f"{res.graded:,} graded, {res.ungraded:,} ungraded"
    )
    if res.cost_cut:
        con.print(f"  cost per request: logged {_ci(res.logged_cost, usd)}, candidate {_ci(res.candidate_cost, usd)}; "
                  f"difference {_ci(res.cost_delta, usd)}")  # fmt: skip
        con.print(f"  [bold]cost cut: {_ci(res.cost_cut, pct)}[/bold] (95% bootstrap interval)")
    if res.as_good:
        con.print(f"  [bold]answers judged as good as the logged one: {_ci(res.as_good, pct)}[/bold]; quality delta "
                  f"{_ci(res.quality_delta, pct)}; mean judge score {_ci(res.mean_score, lambda v: f'{v:.1f}')}/10")  # fmt: skip
    if res.served:
        con.print("  served by: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res.served.items(), key=lambda kv: -kv[1])))
    if res.failures:
        con.print("[yellow]  failed: " + "; ".join(f"line {n}: {m}" for n, m in res.failures[:3]) + "[/yellow]")
