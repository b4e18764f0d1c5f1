"""Run an eval set through a gateway config and say what quality, cost and latency it gives.

Each item goes through the full pipeline of an in-process `Gateway` built from the config
(every lever the config turns on, then the real providers), exactly as a client request
would, only without the HTTP hop. Results are cached in SQLite by (config hash, item hash,
model), so re-running a gate after changing one config only pays for that config.
Comparing two configs is paired per item, with bootstrap intervals (`thrifty.evals.stats`).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thrifty.evals.graders import Grade, Services, grade
from thrifty.evals.sets import EvalItem
from thrifty.evals.stats import Interval, PairedDelta, mean_ci, paired_delta, percentile
from thrifty.migrations import Migration, migrate
from thrifty.protocol.view import answer_text

if TYPE_CHECKING:
    from thrifty.config import Config
    from thrifty.gateway import Gateway


@dataclass
class Answer:
    """What one request gave back."""

    text: str
    cost: float
    latency_ms: float
    served_model: str = ""
    error: str | None = None


@dataclass
class ItemResult:
    id: str
    answer: Answer
    grade: Grade
    cached: bool = False

    @property
    def score(self) -> float | None:
        """Quality in [0, 1]; an error counts 0 (the client got nothing); ungraded is None."""
        return self.grade.score

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "response": self.answer.text,
            "cost": self.answer.cost,
            "latency_ms": self.answer.latency_ms,
            "served_model": self.answer.served_model,
            "error": self.answer.error,
            "grade": self.grade.to_dict(),
            "cached": self.cached,
        }


@dataclass
class RunResult:
    label: str
    config_hash: str
    results: dict[str, ItemResult] = field(default_factory=dict)

    def summary(self, confidence: float = 0.95) -> Summary:
        graded = [r.score for r in self.results.values() if r.score is not None]
        costs = [r.answer.cost for r in self.results.values()]
        latencies = [r.answer.latency_ms for r in self.results.values() if not r.cached]
        if not latencies:  # all from cache: report the latencies measured when they ran
            latencies = [r.answer.latency_ms for r in self.results.values()]
        return Summary(
            label=self.label,
            items=len(self.results),
            graded=len(graded),
            ungraded=sum(1 for r in self.results.values() if r.grade.status == "ungraded"),
            errors=sum(1 for r in self.results.values() if r.answer.error),
            cached=sum(1 for r in self.results.values() if r.cached),
            quality=mean_ci(graded, confidence).scaled(100),
            cost_total=sum(costs),
            cost_per_item=mean_ci(costs, confidence),
            latency_ms=mean_ci(latencies, confidence),
            latency_p50=percentile(latencies, 50),
            latency_p95=percentile(latencies, 95),
        )


@dataclass
class Summary:
    label: str
    items: int
    graded: int
    ungraded: int
    errors: int
    cached: int
    #: percent of graded items' mean score
    quality: Interval
    cost_total: float
    cost_per_item: Interval
    latency_ms: Interval
    latency_p50: float
    latency_p95: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "items": self.items,
            "graded": self.graded,
            "ungraded": self.ungraded,
            "errors": self.errors,
            "cached": self.cached,
            "quality_pct": self.quality.to_dict(),
            "cost_total_usd": self.cost_total,
            "cost_per_item_usd": self.cost_per_item.to_dict(),
            "latency_ms": self.latency_ms.to_dict(),
            "latency_p50_ms": self.latency_p50,
            "latency_p95_ms": self.latency_p95,
        }


@dataclass
class ItemDiff:
    id: str
    a: str
    b: str
    a_score: float | None
    b_score: float | None
    cost_delta: float
    #: what B's grader said (or A's, if B's says nothing)
    detail: str = ""

    @property
    def kind(self) -> str:
        if self.a_score is None or self.b_score is None:
            return "ungraded"
        return "regressed" if self.b_score < self.a_score else "improved"


@dataclass
class Comparison:
    a: Summary
    b: Summary
    #: B − A in percentage points over the items graded under both configs
    delta_pp: Interval
    paired: PairedDelta
    max_drop_pp: float
    confidence: float
    diffs: list[ItemDiff]

    @property
    def regressed(self) -> bool:
        """B is worse than A by more than `max_drop_pp`, with `confidence`."""
        return self.paired.delta.n > 0 and self.paired.p_drop_exceeds >= self.confidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "delta_pp": self.delta_pp.to_dict(),
            "p_drop_exceeds": self.paired.p_drop_exceeds,
            "drop_lower_bound_pp": self.paired.drop_lower_bound * 100,
            "max_drop_pp": self.max_drop_pp,
            "confidence": self.confidence,
            "regressed": self.regressed,
            "diffs": [
                {"id": d.id, "kind": d.kind, "a": d.a, "b": d.b, "a_score": d.a_score, "b_score": d.b_score,
                 "cost_delta": d.cost_delta, "detail": d.detail}
                for d in self.diffs
            ],
        }  # fmt: skip


def compare(a: RunResult, b: RunResult, max_drop_pp: float = 1.0, confidence: float = 0.95) -> Comparison:
    """Pair the two runs by item id and bootstrap the quality difference."""
    common = [i for i in a.results if i in b.results]
    pairs = [
        (a.results[i].score, b.results[i].score)
        for i in common
        if a.results[i].score is not None and b.results[i].score is not None
    ]
    sa = [float(x) for x, _ in pairs]  # type: ignore[arg-type]
    sb = [float(y) for _, y in pairs]  # type: ignore[arg-type]
    paired = paired_delta(sa, sb, max_drop=max_drop_pp / 100, confidence=confidence)
    diffs = []
    for i in common:
        ra, rb = a.results[i], b.results[i]
        if ra.grade.status != rb.grade.status or ra.score != rb.score:
            diffs.append(
                ItemDiff(i, ra.grade.status, rb.grade.status, ra.score, rb.score, rb.answer.cost - ra.answer.cost,
                         rb.grade.detail or ra.grade.detail)
            )  # fmt: skip
    diffs.sort(key=lambda d: ({"regressed": 0, "ungraded": 1, "improved": 2}[d.kind], d.id))
    return Comparison(
        a=a.summary(confidence),
        b=b.summary(confidence),
        delta_pp=paired.delta.scaled(100),
        paired=paired,
        max_drop_pp=max_drop_pp,
        confidence=confidence,
        diffs=diffs,
    )


# -- the result cache ---------------------------------------------------------------------



#: The eval result cache's schema history (see `thrifty.migrations`).
EVAL_CACHE_MIGRATIONS = (
    Migration("eval_cache_0001_initial", lambda dialect: [
        """CREATE TABLE IF NOT EXISTS eval_results (
            config_hash TEXT NOT NULL, item_key TEXT NOT NULL, model TEXT NOT NULL,
            item_id TEXT NOT NULL, response TEXT NOT NULL, cost_usd REAL NOT NULL,
            latency_ms REAL NOT NULL, served_model TEXT NOT NULL, grade TEXT NOT NULL, ts REAL NOT NULL,
            PRIMARY KEY (config_hash, item_key, model))"""
    ]),
)

class ResultCache:
    """SQLite: (config hash, item hash, model) -> answer and grade. Errors are never cached."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._pending = 0
        migrate(self._db, "sqlite", "eval_cache", EVAL_CACHE_MIGRATIONS, where=str(self.path))

    def get(self, config_hash: str, item: EvalItem, model: str = "") -> ItemResult | None:
        with self._lock:
            row = self._db.execute(
                "SELECT response, cost_usd, latency_ms, served_model, grade FROM eval_results "
                "WHERE config_hash = ? AND item_key = ? AND model = ?",
                (config_hash, item.key(), model),
            ).fetchone()
        if row is None:
            return None
        answer = Answer(text=row[0], cost=row[1], latency_ms=row[2], served_model=row[3])
        return ItemResult(item.id, answer, Grade.from_dict(json.loads(row[4])), cached=True)

    def put(self, config_hash: str, item: EvalItem, result: ItemResult, model: str = "") -> None:
        if result.answer.error or result.grade.status == "ungraded":
            return  # transient: try again next run
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO eval_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (config_hash, item.key(), model, item.id, result.answer.text, result.answer.cost,
                 result.answer.latency_ms, result.answer.served_model, json.dumps(result.grade.to_dict()), time.time()),
            )  # fmt: skip
            self._pending += 1
            if self._pending >= 64:  # a commit per result would cost a sync per item
                self._db.commit()
                self._pending = 0

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()


# -- running requests ---------------------------------------------------------------------


def config_hash(config: Config) -> str:
    """A hash of everything in a config that can change an answer (not where it was read from)."""
    blob = config.model_dump_json(exclude={"source", "lines"})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]




def _error_text(body: dict[str, Any] | None, status: int) -> str:
    if body and isinstance(body.get("error"), dict):
        return f"{status}: {body['error'].get('message', '')}"[:300]
    return f"status {status}"


class GatewayTarget:
    """An in-process gateway built from a config; items go through its whole pipeline."""

    def __init__(self, config: Config, label: str = "", default_model: str | None = None) -> None:
        self.config = config
        self.label = label or (config.source or "config")
        self.default_model = default_model or (config.models[0].name if config.models else None)
        # the default model answers items that name none, so it is part of what decides a result
        self.hash = hashlib.sha256(f"{config_hash(config)}:{self.default_model}".encode()).hexdigest()[:32]
        self.gateway: Gateway | None = None

    async def __aenter__(self) -> GatewayTarget:
        from thrifty.gateway import Gateway

        self.gateway = Gateway(self.config)
        await self.gateway.start(ledger=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.close()
            self.gateway = None

    def _context(self, body: dict[str, Any], route: str) -> Any:
        from thrifty.types import Context

        return Context(protocol="openai", body=body, config=self.config, tags={"route": route, "source": "eval"},
                       requested_model=str(body.get("model", "")), original_body=copy.deepcopy(body),
                       origin="eval")  # eval traffic is not live traffic: shadow evaluation skips it

    async def ask(self, item: EvalItem, model: str | None = None) -> Answer:
        """Send `item` through the pipeline, or straight to `model` (no levers) if given."""
        assert self.gateway is not None and self.gateway.pipeline is not None, "use `async with`"
        body = copy.deepcopy(item.request)
        body.pop("stream", None)
        body.pop("stream_options", None)
        if model is not None:
            body["model"] = model
        elif not body.get("model"):
            if self.default_model is None:
                return Answer("", 0.0, 0.0, error="the request names no model and the config has none")
            body["model"] = self.default_model
        ctx = self._context(body, str(item.meta.get("route", "default")))
        started = time.perf_counter()
        try:
            if model is None:
                reply = await self.gateway.pipeline(ctx)
            else:
                reply = await self.gateway.call_model(ctx, model, body)
            if reply.stream is not None:  # a lever answered with a stream: read it to the end
                async for _ in reply.stream:
                    pass
        except Exception as exc:
            latency = (time.perf_counter() - started) * 1000
            return Answer("", 0.0, latency, error=f"{type(exc).__name__}: {exc}"[:300])
        latency = (time.perf_counter() - started) * 1000
        side = ctx.side_cost
        # a direct call's own cost is already in side_cost; a pipeline reply's is not
        cost = float(side if model is not None else reply.cost + side)
        if not reply.ok:
            return Answer("", cost, latency, reply.served_model, _error_text(reply.body, reply.status))
        return Answer(answer_text(reply.body), cost, latency, reply.served_model)

    async def judge(self, model: str, messages: list[dict[str, Any]], timeout: float) -> str:
        """A judge call: straight to `model`, no levers; raises on any failure."""
        assert self.gateway is not None
        body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": 512}
        ctx = self._context(body, "eval-judge")
        reply = await asyncio.wait_for(self.gateway.call_model(ctx, model, body), timeout)
        if not reply.ok:
            raise RuntimeError(_error_text(reply.body, reply.status))
        return answer_text(reply.body)


async def run_set(
    items: Sequence[EvalItem],
    target: GatewayTarget,
    *,
    concurrency: int = 8,
    cache: ResultCache | None = None,
    services: Services | None = None,
    model: str | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> RunResult:
    """Answer and grade every item (at most `concurrency` at a time)."""
    services = services or Services()
    if services.judge is None:
        services.judge = target.judge
    run = RunResult(label=target.label if model is None else model, config_hash=target.hash)
    sem = asyncio.Semaphore(max(1, concurrency))
    key_model = model or ""

    async def one(item: EvalItem) -> ItemResult:
        if cache is not None:
            hit = await asyncio.to_thread(cache.get, target.hash, item, key_model)
            if hit is not None:
                return hit
        async with sem:
            answer = await target.ask(item, model)
            if answer.error:
                g = Grade.of(False, f"request failed: {answer.error}")
            else:
                g = await grade(item.grader, answer.text, item.expected, prompt=item.prompt_text, services=services)
        result = ItemResult(item.id, answer, g)
        if cache is not None:
            await asyncio.to_thread(cache.put, target.hash, item, result, key_model)
        return result

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc or run.label, unit="item", leave=False, dynamic_ncols=True)
    try:
        for fut in asyncio.as_completed([one(i) for i in items]):
            result = await fut
            run.results[result.id] = result
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    # keep the set's order for reports
    run.results = {i.id: run.results[i.id] for i in items if i.id in run.results}
    return run


def labels(items: Sequence[EvalItem], runs: dict[str, RunResult]) -> list[dict[str, Any]]:
    """Per-candidate quality, cost and response per item: the format `thrifty router train` reads."""
    out = []
    for item in items:
        candidates = {}
        for model, run in runs.items():
            r = run.results.get(item.id)
            if r is None or r.score is None:
                continue  # ungraded: no label rather than a wrong one
            candidates[model] = {"quality": r.score, "cost": r.answer.cost, "response": r.answer.text}
        if not candidates:
            continue
        row: dict[str, Any] = {"id": item.id}
        msgs = item.messages
        if len(msgs) == 1 and msgs[0].get("role") == "user" and isinstance(msgs[0].get("content"), str):
            row["prompt"] = msgs[0]["content"]
        else:
            row["messages"] = msgs
        row["candidates"] = candidates
        out.append(row)
    return out
