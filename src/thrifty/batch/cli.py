"""`thrifty batch run|status|resume|cancel|report`: the batch lane on the command line.

`run` submits a JSONL file (OpenAI batch input lines) to the store named by the config and
runs it in this process, with a progress bar (lines, ETA, running cost). Killed at any
point, `resume JOB` picks the job up where the store says it is: settled lines are not run
again, lines the dead process held come back at once (their lease is released when its pid
is gone) and the output file is written from the store, every line exactly once.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import orjson

from thrifty.config import Config, ConfigError, load_config

__all__ = ["batch"]


def _config(path: str | None) -> Config:
    if path is None:
        from thrifty.server.cli import default_config

        return default_config()
    return load_config(path)


async def _with_lane(config: Config, work: Any) -> Any:
    from thrifty.batch.lane import BatchLane
    from thrifty.gateway import Gateway

    gateway = Gateway(config)
    await gateway.start()
    lane = BatchLane(gateway)
    try:
        return await work(lane)
    finally:
        await lane.aclose()
        await gateway.close()


def _bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="line", dynamic_ncols=True, file=sys.stderr)


async def _run_to_end(lane: Any, job_id: str, output: str | None) -> None:
    from thrifty.batch.report import render_report

    job = await asyncio.to_thread(lane.store.get_job, job_id)
    await lane.reclaim_dead(job_id)  # before the bar counts what is done
    bar = _bar(job["lines"])
    first = await lane.progress(job_id)
    bar.update(first["done"])

    def progress(p: dict[str, Any]) -> None:
        bar.update(p["done"] - bar.n)
        bar.set_postfix_str(f"${Decimal(p['cost']):.6f} (list ${Decimal(p['list_cost']):.6f}), failed {p['failed']}")

    try:
        await lane.run_job(job_id, progress)
    finally:
        bar.close()
    job = await asyncio.to_thread(lane.store.get_job, job_id)
    out = output or orjson.loads(job["metadata"]).get("thrifty_output")
    if out:
        _write(lane, job, Path(out))
    click.echo(render_report(await lane.report(job_id)))


def _write(lane: Any, job: dict[str, Any], out: Path) -> None:
    for file_id, path in ((job["output_file_id"], out), (job["error_file_id"], out.with_suffix(".errors.jsonl"))):
        if file_id is None:
            if path.exists() and path != out:
                path.unlink()
            if path == out:
                path.write_text("")
            continue
        f = lane.store.get_file(file_id, content=True)
        path.write_text(f["content"])
        click.echo(f"wrote {path}", err=True)


@click.group()
def batch() -> None:
    """Batch jobs: cheaper, resumable, every line through the levers first."""


_CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THRIFTY_CONFIG",
                       help="YAML config (models, store, levers, batch:).")


@batch.command("run")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output JSONL (answered lines); failed lines go to OUTPUT with .errors.jsonl.")
@click.option("--deadline", default="24h", show_default=True, help="When the job must be done (90s, 30m, 24h, 7d).")
@click.option("--submit-only", is_flag=True, help="Create the job and print its id; run it later (resume) or in a server.")
@_CONFIG
def run(input_file: str, output: str, deadline: str, submit_only: bool, config_path: str | None) -> None:
    """Submit INPUT_FILE (OpenAI batch lines) and run it to the end."""
    from thrifty.batch.inputs import parse_jsonl
    from thrifty.batch.lane import parse_duration
    from thrifty.errors import ThriftyError

    try:
        config = _config(config_path)
        seconds = parse_duration(deadline)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None

    async def work(lane: Any) -> None:
        raw = Path(input_file).read_bytes()
        try:
            aliases = lane.gateway.aliases
            wire, lines = parse_jsonl(raw, endpoint=None, max_bytes=lane.settings.max_file_bytes,
                                      max_lines=lane.settings.max_lines,
                                      known_model=lambda m: config.has_model(m) or (aliases is not None and aliases(m)))
        except ThriftyError as exc:
            raise click.ClickException(f"{input_file}: {exc.message}") from None
        endpoint = "/v1/chat/completions" if wire == "openai" else "/v1/messages"
        job = await lane.submit(wire=wire, endpoint=endpoint, lines=lines, deadline_s=seconds,
                                metadata={"thrifty_output": str(Path(output).resolve())})
        click.echo(f"job {job['id']}: {len(lines)} lines, target {job['target']}", err=True)
        if submit_only:
            click.echo(job["id"])
            return
        await _run_to_end(lane, job["id"], output)

    asyncio.run(_with_lane(config, work))


@batch.command("resume")
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output JSONL (default: the one given to run).")
@_CONFIG
def resume(job_id: str, output: str | None, config_path: str | None) -> None:
    """Run what is left of JOB_ID (after a crash, a kill, or a submit-only run)."""
    config = _config(config_path)

    async def work(lane: Any) -> None:
        if await asyncio.to_thread(lane.store.get_job, job_id) is None:
            raise click.ClickException(f"no batch {job_id!r} in {config.store}")
        await _run_to_end(lane, job_id, output)

    asyncio.run(_with_lane(config, work))


@batch.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_CONFIG
def status(job_id: str, as_json: bool, config_path: str | None) -> None:
    """Where JOB_ID stands: lines done, from cache, failed, cost so far."""
    from thrifty.batch.report import job_report, render_report
    from thrifty.batch.store import BatchStore

    store = BatchStore(_config(config_path).store)
    try:
        job = store.get_job(job_id)
        if job is None:
            raise click.ClickException(f"no batch {job_id!r}")
        r = job_report(job, store.lines(job_id))
    finally:
        store.close()
    click.echo(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode() if as_json else render_report(r))


@batch.command("cancel")
@click.argument("job_id")
@_CONFIG
def cancel(job_id: str, config_path: str | None) -> None:
    """Cancel JOB_ID: lines not started are not run; lines running finish and are billed."""
    config = _config(config_path)

    async def work(lane: Any) -> None:
        if await asyncio.to_thread(lane.store.get_job, job_id) is None:
            raise click.ClickException(f"no batch {job_id!r}")
        job = await lane.cancel(job_id)
        click.echo(f"batch {job_id}: {job['status']}")

    asyncio.run(_with_lane(config, work))
