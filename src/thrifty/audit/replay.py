"""`thrifty replay`: run past traffic through a candidate config and compare with what was spent.

Each logged request goes, in order, through the candidate's real pipeline (its levers,
routing, caps, caches) and dispatch. Offline (the default) every configured model is served
by a `RecordedProvider` that answers with the logged response: its tokens are the logged
ones (scaled when a lever shrank the prompt, cut when a cap lowered `max_tokens`) and the
dispatch prices them at the *candidate* model's rates. With `--live` the candidate's real
providers are called instead (that costs money).

Quality is reported where the log has labels: a line may carry
`"labels": {"correct": {"<model>": true|false, ...}}` (the demo log takes them from
RouterBench), and a request counts as correct when the model that served it is labelled
correct. Answers served by a cache or another lever count as the labels of the model
whose answer was reused, which replay cannot see, so they are reported as unlabelled.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from thrifty.audit.sources import (
    Format,
    LogSource,
    _float,
    _json_field,
    _json_lines,
    detect_format,
    parse_time,
)
from thrifty.config import Config
from thrifty.errors import UpstreamError
from thrifty.providers.base import Provider
from thrifty.types import Context, Reply, Usage

REPLAY_KEY = "_replay"


@dataclass
class Past:
    """One logged request with what it got and what it cost."""

    line: int
    request: dict[str, Any]
    response: dict[str, Any] | None
    cost: float | None
    ts: float | None = None
    key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    labels: dict[str, bool] = field(default_factory=dict)
    error: bool = False


def read_past(location: str, fmt: Format = "auto") -> tuple[Iterator[Past], LogSource]:
    """Logged requests with their bodies (JSONL and LiteLLM logs, or a ledger kept with bodies)."""
    fmt = detect_format(location) if fmt == "auto" else fmt
    src = LogSource(location, fmt)
    return _past(src), src


def _past(src: LogSource) -> Iterator[Past]:
    if src.format == "jsonl":
        for obj, n in _json_lines(src.location, src.bad, [0]):
            if not isinstance(obj, dict) or not isinstance(obj.get("request"), dict):
                if not (isinstance(obj, dict) and "task" in obj and "success" in obj):
                    src.bad.add(n, "no `request` object to replay")
                continue
            tags = obj.get("tags") if isinstance(obj.get("tags"), dict) else {}
            labels = obj.get("labels", {})
            correct = labels.get("correct") if isinstance(labels, dict) else None
            status = obj.get("status")
            yield Past(
                line=n, request=obj["request"],
                response=obj.get("response") if isinstance(obj.get("response"), dict) else None,
                cost=_float(obj.get("cost")), ts=parse_time(obj.get("timestamp")),
                key=(tags or {}).get("key"), tags={k: str(v) for k, v in (tags or {}).items()},
                labels={str(k): bool(v) for k, v in correct.items()} if isinstance(correct, dict) else {},
                error=(isinstance(status, int) and status >= 400) or bool(obj.get("error")),
            )  # fmt: skip
        return
    if src.format == "ledger":
        from thrifty.audit.sources import _ledger_rows_postgres, _ledger_rows_sqlite

        location = src.location
        rows = (
            _ledger_rows_postgres(location)
            if location.startswith(("postgres://", "postgresql://"))
            else _ledger_rows_sqlite(location)
        )
        for r, n in rows:
            if r is None or r.get("__outcome__"):
                continue
            body = _json_field(r.get("request_body"))
            if not isinstance(body, dict):
                src.bad.add(n, "no request body in the ledger (set ledger.store_bodies: true to replay it)")
                continue
            if r.get("protocol") not in (None, "openai"):
                src.bad.add(n, "only OpenAI-protocol requests are replayed")
                continue
            resp = _json_field(r.get("response_body"))
            yield Past(
                line=n, request=body, response=resp if isinstance(resp, dict) else None,
                cost=int(r.get("cost_pico") or 0) / 1e12, ts=float(r["ts"]), key=r.get("key_name"),
                tags={k: str(v) for k, v in (_json_field(r.get("tags")) or {}).items()},
                error=int(r.get("status") or 0) >= 400,
            )  # fmt: skip
        return
    # LiteLLM spend logs (JSONL; their bodies are there only when LiteLLM stored prompts)
    for obj, n in _json_lines(src.location, src.bad, [0]):
        if not isinstance(obj, dict):
            src.bad.add(n, "not a JSON object")
            continue
        req = _json_field(obj.get("proxy_server_request"))
        messages = _json_field(obj.get("messages"))
        if not (isinstance(req, dict) and req.get("messages")) and isinstance(messages, list) and messages:
            req = {"model": obj.get("model_group") or obj.get("model"), "messages": messages}
        if not (isinstance(req, dict) and req.get("messages")):
            src.bad.add(n, "no messages to replay (LiteLLM keeps them only with store_prompts_in_spend_logs)")
            continue
        resp = _json_field(obj.get("response"))
        yield Past(
            line=n, request=req, response=resp if isinstance(resp, dict) and resp else None,
            cost=_float(obj.get("spend")), ts=parse_time(obj.get("startTime")),
            error=obj.get("status") == "failure",
        )  # fmt: skip


class RecordedProvider(Provider):
    """Answers with the logged response of the request being replayed (no network)."""

    protocol = "openai"

    async def send(self, body: dict[str, Any], ctx: Context) -> Reply:
        past: Past | None = ctx.extra.get(REPLAY_KEY)
        if past is None or past.response is None or past.error or "choices" not in past.response:
            raise UpstreamError(502, "no recorded answer for this request", retryable=False)
        out = copy.deepcopy(past.response)
        out["model"] = self.config.upstream_model
        logged = out.get("usage")
        usage: dict[str, Any] = logged if isinstance(logged, dict) else {}
        logged_in = int(usage.get("prompt_tokens") or 0)
        logged_out = int(usage.get("completion_tokens") or 0)
        # A lever that rewrote the prompt changes its size; scale the logged count with it.
        before = len(orjson.dumps(past.request.get("messages", [])))
        after = len(orjson.dumps(body.get("messages", [])))
        in_tokens = round(logged_in * after / before) if before else logged_in
        cap = body.get("max_completion_tokens", body.get("max_tokens"))
        out_tokens = logged_out
        if isinstance(cap, int) and cap < logged_out:
            out_tokens = cap
            if out.get("choices"):
                out["choices"][0]["finish_reason"] = "length"
        out["usage"] = {"prompt_tokens": in_tokens, "completion_tokens": out_tokens, "total_tokens": in_tokens + out_tokens}
        return Reply(status=200, body=out, usage=Usage(input_tokens=in_tokens, output_tokens=out_tokens))


@dataclass
class ReplayResult:
    requests: int = 0
    replayed: int = 0
    failed: int = 0
    actual_cost: float = 0.0
    candidate_cost: float = 0.0
    savings: dict[str, float] = field(default_factory=dict)
    answered_by: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    actual_correct: int = 0
    candidate_correct: int = 0
    unlabelled_reuse: int = 0
    remapped: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    bad_lines: int = 0
    bad_examples: list[tuple[int, str]] = field(default_factory=list)
    live: bool = False

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _target(model: str, config: Config, model_map: dict[str, str]) -> str | None:
    if model in model_map:
        return model_map[model]
    if "*" in model_map:
        return model_map["*"]
    return model if config.has_model(model) else None


async def replay(
    location: str,
    config: Config,
    *,
    fmt: Format = "auto",
    live: bool = False,
    model_map: dict[str, str] | None = None,
    limit: int | None = None,
) -> ReplayResult:
    """Replay the log at `location` through `config`'s pipeline; see the module docstring."""
    from thrifty.gateway import Gateway

    model_map = model_map or {}
    for target in model_map.values():
        if not config.has_model(target):
            raise ValueError(f"--model-map names {target!r}, which the candidate config does not configure")
    gateway = Gateway(config)
    await gateway.start(ledger=False)
    if not live:
        for name, provider in list(gateway.providers.items()):
            await provider.close()
            gateway.providers[name] = RecordedProvider(config.model(name))
    res = ReplayResult(live=live)
    items, src = read_past(location, fmt)
    try:
        for past in items:
            if limit is not None and res.requests >= limit:
                break
            res.requests += 1
            if past.error:
                continue  # a failed call is not traffic to replay; its cost (usually 0) is not compared
            logged_model = str(past.request.get("model") or (past.response or {}).get("model") or "")
            model = _target(logged_model, config, model_map)
            if model is None:
                res.failed += 1
                if len(res.failures) < 20:
                    res.failures.append((past.line, f"model {logged_model!r} is not in the candidate config (use --model-map)"))
                continue
            res.remapped += model != logged_model
            body = dict(past.request)
            body["model"] = model
            body.pop("stream", None)
            ctx = Context(protocol="openai", body=body, config=config, key_name=past.key,
                          tags={k: v for k, v in past.tags.items() if k in ("route", "feature")},
                          requested_model=model)  # fmt: skip
            ctx.extra[REPLAY_KEY] = past
            try:
                assert gateway.pipeline is not None
                reply = await gateway.pipeline(ctx)
            except UpstreamError as exc:
                res.failed += 1
                if len(res.failures) < 20:
                    res.failures.append((past.line, exc.message))
                continue
            res.replayed += 1
            actual = past.cost if past.cost is not None else 0.0
            side = ctx.side_cost
            res.actual_cost += actual
            res.candidate_cost += float(reply.cost + side)
            for lever, usd in ctx.savings.items():
                res.savings[lever] = res.savings.get(lever, 0.0) + float(usd)
            answered = ctx.extra.get("answered_by")
            if answered:
                res.answered_by[answered] = res.answered_by.get(answered, 0) + 1
            served = reply.served_model or model
            res.served[served] = res.served.get(served, 0) + 1
            if past.labels:
                upstream = config.model(served).upstream_model if config.has_model(served) else served
                label = past.labels.get(served, past.labels.get(upstream))
                was = past.labels.get(logged_model)
                if answered:
                    res.unlabelled_reuse += 1
                elif label is not None and was is not None:
                    res.labelled += 1
                    res.actual_correct += was
                    res.candidate_correct += label
    finally:
        await gateway.close()
    res.bad_lines, res.bad_examples = src.bad.count, list(src.bad.examples)
    return res


def run_replay(location: str, config: Config, **kwargs: Any) -> ReplayResult:
    return asyncio.run(replay(location, config, **kwargs))
