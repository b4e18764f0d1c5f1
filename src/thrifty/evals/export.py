"""Distillation data: the reference model's good answers from the ledger, as chat fine-tuning JSONL.

A route served by an expensive reference model is the raw material for a cheaper student:
its ledger rows (kept with `ledger: {store_bodies: true}`) hold the prompts and answers.
`thrifty export finetune --route R` keeps the rows that
- were served by the reference model (`--model`, default the route's
  `shadow.reference_model`), on route R, with status 2xx and outcome ok;
- finished naturally (not cut at the token limit) and hold plain text, not tool calls;
- are graded good: a task outcome recorded for the row (`X-Thrifty-Task` + the outcome API)
  must be a success; `--require-grade` keeps only rows with such a success; `--grader`
  grades each answer again (regex, json_schema, or a judge through the config's models);
then removes duplicate prompts (the latest answer wins) and splits by a hash of the prompt,
so that a prompt never lands in both files and re-running gives the same split.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from thrifty.evals.graders import GraderSpecError, Services, grade, validate_spec
from thrifty.protocol.view import answer_text, content_text


@dataclass
class ExportResult:
    train: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    scanned: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def _text_only(content: Any) -> str | None:
    """Plain text of a message content, or None when it holds anything but text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return content_text(content)
    return None


def chat_messages(protocol: str, request: dict[str, Any]) -> list[dict[str, str]] | None:
    """The prompt as OpenAI-style chat messages, or None if it holds non-text parts or tools."""
    out: list[dict[str, str]] = []
    if protocol == "anthropic" and request.get("system"):
        system = _text_only(request["system"])
        if system is None:
            return None
        out.append({"role": "system", "content": system})
    for msg in request.get("messages") or []:
        if not isinstance(msg, dict) or msg.get("tool_calls") or msg.get("role") not in {"system", "developer", "user", "assistant"}:
            return None
        text = _text_only(msg.get("content"))
        if text is None:
            return None
        role = "system" if msg["role"] == "developer" else msg["role"]
        out.append({"role": role, "content": text})
    if not out or out[-1]["role"] != "user":
        return None
    return out


def _finished(response: dict[str, Any]) -> bool:
    choices = response.get("choices")
    if isinstance(choices, list) and choices:
        choice = choices[0]
        if (choice.get("message") or {}).get("tool_calls"):
            return False
        return choice.get("finish_reason") in (None, "stop")
    return response.get("stop_reason") in (None, "end_turn", "stop_sequence")


def prompt_key(messages: list[dict[str, str]]) -> str:
    norm = [{"role": m["role"], "content": " ".join(m["content"].split())} for m in messages]
    return hashlib.sha256(json.dumps(norm, sort_keys=True).encode()).hexdigest()


def in_validation(key: str, share: float, seed: str = "") -> bool:
    h = int(hashlib.sha256((seed + key).encode()).hexdigest()[:12], 16)
    return h / float(1 << 48) < share


def _loads(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    return json.loads(value)


def fetch_rows(store: Any, route: str, model: str) -> list[dict[str, Any]]:
    """Candidate rows, oldest first, with their task outcome if one was recorded."""
    sql = store.ph(
        """SELECT r.request_id, r.ts, r.protocol, r.status, r.outcome, r.request_body, r.response_body,
                  r.task, o.success
           FROM requests r LEFT JOIN task_outcomes o ON o.task = r.task
           WHERE r.route = ? AND r.served_model = ? ORDER BY r.ts"""
    )
    cols = ("request_id", "ts", "protocol", "status", "outcome", "request_body", "response_body", "task", "success")
    return [dict(zip(cols, row, strict=True)) for row in store.execute(sql, [route, model])]


async def collect(
    rows: list[dict[str, Any]],
    *,
    validation: float = 0.1,
    require_grade: bool = False,
    grader: dict[str, Any] | None = None,
    services: Services | None = None,
    seed: str = "",
) -> ExportResult:
    result = ExportResult()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        result.scanned += 1
        if not (200 <= int(row["status"]) < 300) or row["outcome"] != "ok":
            result.dropped["failed request"] += 1
            continue
        request, response = _loads(row["request_body"]), _loads(row["response_body"])
        if not request or not response:
            result.dropped["no stored bodies (ledger.store_bodies is off)"] += 1
            continue
        if row["success"] is not None and not bool(row["success"]):
            result.dropped["task outcome: failure"] += 1
            continue
        if require_grade and row["success"] is None:
            result.dropped["no grade"] += 1
            continue
        if not _finished(response):
            result.dropped["cut short or tool call"] += 1
            continue
        messages = chat_messages(row["protocol"], request)
        answer = answer_text(response)
        if messages is None or not answer.strip():
            result.dropped["not plain text chat"] += 1
            continue
        if grader is not None:
            g = await grade(grader, answer, None, prompt=messages[-1]["content"], services=services)
            if not g.passed:
                result.dropped[f"grader: {g.status}"] += 1
                continue
        key = prompt_key(messages)
        if key in latest:
            result.dropped["duplicate prompt"] += 1
        latest[key] = {"messages": [*messages, {"role": "assistant", "content": answer}]}
    for key, example in latest.items():
        (result.validation if in_validation(key, validation, seed) else result.train).append(example)
    return result


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


@click.group("export")
def export_group() -> None:
    """Export data from the ledger."""


@export_group.command("finetune")
@click.option("--route", required=True, help="The route whose traffic to export.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Config (ledger store, reference model, judge models).")
@click.option("--ledger", help="Ledger store URL or SQLite file (default: the config's store).")
@click.option("--model", help="The reference model (default: the route's shadow.reference_model).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--validation", default=0.1, show_default=True, type=click.FloatRange(0, 0.9), help="Share of prompts for validation.")
@click.option("--require-grade", is_flag=True, help="Keep only rows with a recorded successful task outcome.")
@click.option("--grader", help='Grade each answer again, e.g. \'{"type": "judge", "model": "m", "rubric": "..."}\'.')
@click.option("--seed", default="", help="Salt for the train/validation split.")
def finetune_cmd(
    route: str, config_path: str | None, ledger: str | None, model: str | None, out_dir: str, validation: float,
    require_grade: bool, grader: str | None, seed: str,
) -> None:  # fmt: skip
    """Write the reference model's graded-good answers on ROUTE as chat fine-tuning JSONL."""
    from thrifty.config import Config, ConfigError, load_config
    from thrifty.ledger.store import open_store

    try:
        config = load_config(config_path) if config_path else Config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    url = ledger or config.store
    if "://" not in url:
        url = "sqlite:///" + url
    if model is None:
        model = config.lever_settings("shadow", route).get("reference_model")
        if not model:
            raise click.ClickException("name the reference model with --model (or set shadow.reference_model)")
    spec = None
    if grader:
        try:
            spec = json.loads(grader)
            validate_spec(spec, check_expected=False)
        except (json.JSONDecodeError, GraderSpecError) as exc:
            raise click.ClickException(f"--grader: {exc}") from None
    store = open_store(url)
    try:
        rows = fetch_rows(store, route, model)
    finally:
        store.close()
    result = asyncio.run(_collect_with_gateway(rows, config, spec, validation, require_grade, seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "train.jsonl", result.train)
    _write(out / "validation.jsonl", result.validation)
    click.echo(f"scanned {result.scanned} rows of {model} on route {route}: "
               f"{len(result.train)} train, {len(result.validation)} validation -> {out}")  # fmt: skip
    for reason, n in result.dropped.most_common():
        click.echo(f"  dropped {n}: {reason}")


async def _collect_with_gateway(
    rows: list[dict[str, Any]], config: Any, spec: dict[str, Any] | None, validation: float, require_grade: bool,
    seed: str,
) -> ExportResult:  # fmt: skip
    if spec is None or spec.get("type") != "judge":
        return await collect(rows, validation=validation, require_grade=require_grade, grader=spec, seed=seed)
    from thrifty.evals.runner import GatewayTarget

    async with GatewayTarget(config) as target:
        services = Services(judge=target.judge)
        return await collect(
            rows, validation=validation, require_grade=require_grade, grader=spec, services=services, seed=seed
        )
