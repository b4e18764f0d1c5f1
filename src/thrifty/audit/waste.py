"""Where the money goes and what is wasted: one streaming pass over `AuditRow`s.

`Analyzer.add(row)` updates fixed-size summaries (see `sketch`); `Analyzer.finish()` runs
the near-duplicate search on a bounded sample and turns the summaries into an `Audit`: cost
by model, route, feature, key and day, the top cost drivers, each kind of waste, and an
estimate of what each thrifty lever would save on this traffic, with its assumptions.

Every estimate says how it was obtained (`Lever.basis`): **measured** (counted in the log:
exact repeats, retries), **verified** (near-duplicates the semantic cache's own verifier
accepts, `thrifty.audit.neardup`) or **assumed** (a rate or a model of behaviour the log
cannot show: routing, caps, provider prompt-cache hits). The headline (`Audit.saving_total`)
counts only measured and verified savings; assumed ones are shown apart
(`Audit.saving_assumed`), each with the step that would measure it.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from thrifty.audit.neardup import QuestionSample, near_duplicates
from thrifty.audit.pricing import RateBook, Rates
from thrifty.audit.row import AuditRow
from thrifty.audit.sketch import Bloom, Groups, LogHistogram, Reservoir, TopK
from thrifty.audit.sources import BadLines, TaskOutcome

#: Characters per token when a log has no token counts (English prose averages about 4).
CHARS_PER_TOKEN = 4.0
#: When a model's rates are unknown, output tokens are assumed to cost this many input tokens.
OUTPUT_PRICE_RATIO = 4.0


@dataclass
class AuditSettings:
    """Knobs of the analysis; each one shows up in the assumptions it drives."""

    #: A repeat of the same request from the same key within this many seconds is a retry.
    retry_window_s: float = 120.0
    #: Distinct questions sampled (uniformly) for the near-duplicate search; 0 turns it off.
    near_dup_sample: int = 2000
    #: Candidates below this cosine are not checked (the semantic cache's `min_cosine`).
    near_dup_min_cosine: float = 0.7
    #: Earlier questions each question is checked against (the semantic cache's `top_k`).
    near_dup_top_k: int = 4
    #: Verifier probability needed; None: the shipped threshold (the semantic cache's default).
    verifier_threshold: float | None = None
    #: An output is "far longer than needed" above this multiple of its group's median.
    long_output_factor: float = 4.0
    #: The cap lever is assumed to cut such outputs to this multiple of the median.
    cap_to_factor: float = 2.0
    #: Provider prompt caches only hold prefixes at least this long (OpenAI: 1,024 tokens).
    min_cacheable_prefix_tokens: int = 1024
    #: The cheaper model the route lever would send easy requests to.
    cheap_model: str = "gpt-4o-mini"
    #: Share of requests on pricier models that a router is assumed to move to `cheap_model`.
    routable_share: float = 0.5
    #: Capacity of the exact-duplicate filter (memory: ~1.8 bytes per item at 0.1% error).
    bloom_capacity: int = 2_000_000
    #: Most distinct values kept per grouping (model, route, feature, key, day); others pool.
    group_cap: int = 500
    #: Most tasks whose cost is tracked for cost per resolved task.
    task_cap: int = 200_000


Basis = Literal["measured", "verified", "assumed"]


@dataclass
class Lever:
    lever: str
    saving: float
    share: float
    finding: str
    assumptions: str
    #: How the saving was obtained: counted in the log, accepted by the verifier, or assumed.
    basis: Basis = "assumed"
    #: For an assumed saving: what would measure it.
    next_step: str = ""


@dataclass
class Audit:
    """The result of an audit: plain data, ready for a table, JSON or the HTML report."""

    source: str
    format: str
    rows: int
    bad_lines: int
    bad_examples: list[tuple[int, str]]
    first_ts: float | None
    last_ts: float | None
    total_cost: float
    priced_rows: int
    unpriced_rows: int
    unknown_models: list[str]
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    by_model: list[dict[str, Any]]
    by_route: list[dict[str, Any]]
    by_feature: list[dict[str, Any]]
    by_key: list[dict[str, Any]]
    by_day: list[dict[str, Any]]
    top_drivers: list[dict[str, Any]]
    top_repeated: list[dict[str, Any]]
    waste: dict[str, dict[str, Any]]
    cacheable: dict[str, Any]
    levers: list[Lever]
    latency_ms: dict[str, float | None]
    tasks: dict[str, Any]
    ledger_savings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _combined(self, bases: tuple[str, ...]) -> float:
        """Levers of these bases together, each acting on what the ones before left:
        1 - prod(1 - share). `dedup` is left out: its retries are exact repeats, already
        counted under `cache`."""
        left = 1.0
        for lv in self.levers:
            if lv.lever != "dedup" and lv.basis in bases:
                left *= 1.0 - min(max(lv.share, 0.0), 1.0)
        return self.total_cost * (1.0 - left)

    @property
    def saving_total(self) -> float:
        """The headline: measured and verified savings only."""
        return self._combined(("measured", "verified"))

    @property
    def saving_assumed(self) -> float:
        """What the assumed levers would add on top of the headline, if their assumptions hold."""
        return self._combined(("measured", "verified", "assumed")) - self.saving_total


class Analyzer:
    """Streams rows into bounded summaries; `finish()` makes the `Audit`."""

    def __init__(
        self,
        settings: AuditSettings | None = None,
        rates: RateBook | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        self.s = settings or AuditSettings()
        self.rates = rates or RateBook()
        self._embed = embed
        cap = self.s.group_cap
        self.by_model, self.by_route, self.by_feature = Groups(cap), Groups(cap), Groups(cap)
        self.by_key, self.by_day, self.drivers = Groups(cap), Groups(cap * 4), Groups(cap * 4)
        self.seen = Bloom(self.s.bloom_capacity)
        self.systems = Bloom(max(10_000, self.s.bloom_capacity // 10))
        self.repeated = TopK(1000)
        self.recent: OrderedDict[tuple[bytes, str | None], tuple[float, bool]] = OrderedDict()
        self.samples: Reservoir[QuestionSample] = Reservoir(self.s.near_dup_sample, seed=7)
        self.question_skips: dict[str, int] = {}
        #: (earlier, later) row numbers of the accepted near-duplicates, for benchmarks; not reported.
        self.near_pairs: list[tuple[int, int]] = []
        self.sampling_questions = 0
        self.latency = LogHistogram()
        self.out_hist: dict[str, LogHistogram] = {}
        self.task_cost: dict[str, float] = {}
        self.task_overflow = 0
        self.outcomes: dict[str, bool] = {}
        self.n = 0
        self.total = 0.0
        self.priced = 0
        self.unpriced = 0
        self.tokens = [0, 0, 0]  # input, cached, output
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.w: dict[str, list[float]] = {
            k: [0, 0.0, 0.0]  # requests, cost, extra (tokens or saving)
            for k in (
                "exact", "retry", "retry_after_error", "system", "system_cacheable", "truncated",
                "errors", "deterministic", "routable", "cache_hits", "with_body",
            )
        }  # fmt: skip
        self.ledger_savings: dict[str, float] = {}
        self._days: dict[int, str] = {}

    # -- streaming -----------------------------------------------------------------------

    def add(self, item: AuditRow | TaskOutcome) -> None:
        if isinstance(item, TaskOutcome):
            self.outcomes[item.task] = item.success
            return
        row = item
        self.n += 1
        rates = self.rates(row.model)
        cost = row.cost
        if cost is None:
            if rates is not None:
                cost = rates.cost(row.input_tokens, row.output_tokens, row.cached_tokens)
                self.priced += 1
            else:
                cost = 0.0
                self.unpriced += 1
        in_cost, out_cost = self._split(row, cost, rates)
        self.total += cost
        self.tokens[0] += row.input_tokens
        self.tokens[1] += row.cached_tokens
        self.tokens[2] += row.output_tokens
        if row.ts is not None:
            self.first_ts = row.ts if self.first_ts is None else min(self.first_ts, row.ts)
            self.last_ts = row.ts if self.last_ts is None else max(self.last_ts, row.ts)
        args = (cost, row.input_tokens, row.output_tokens, row.error)
        self.by_model.add(row.model, *args)
        self.by_route.add(row.route or "(none)", *args)
        self.by_feature.add(row.feature or "(none)", *args)
        self.by_key.add(row.key or "(none)", *args)
        day = self._day(row.ts)
        self.by_day.add(day, *args)
        self.drivers.add(
            "\x1f".join((row.model, row.route or "-", row.feature or "-", row.key or "-")), *args
        )
        if row.latency_ms is not None:
            self.latency.add(row.latency_ms)
        for lever, usd in row.savings.items():
            self.ledger_savings[lever] = self.ledger_savings.get(lever, 0.0) + usd
        if row.cache == "hit":
            self._bump("cache_hits", cost)
        if row.error:
            self._bump("errors", cost)
        if row.finish_reason == "length":
            self._bump("truncated", cost)
        elif not row.error and row.output_tokens:
            group = row.feature or row.route or row.model
            hist = self.out_hist.get(group)
            if hist is None and len(self.out_hist) < self.s.group_cap:
                hist = self.out_hist[group] = LogHistogram()
            if hist is not None:
                hist.add(row.output_tokens, out_cost)
        if row.task is not None:
            if row.task in self.task_cost or len(self.task_cost) < self.s.task_cap:
                self.task_cost[row.task] = self.task_cost.get(row.task, 0.0) + cost
            else:
                self.task_overflow += 1
        self._route(row, cost, rates)
        if row.fingerprint is not None:
            self._repeats(row, cost, in_cost)

    def _day(self, ts: float | None) -> str:
        if ts is None:
            return "(no time)"
        n = int(ts // 86400)
        day = self._days.get(n)
        if day is None:
            day = datetime.fromtimestamp(n * 86400, UTC).strftime("%Y-%m-%d")
            if len(self._days) < 100_000:
                self._days[n] = day
        return day

    def _bump(self, name: str, cost: float, extra: float = 0.0) -> None:
        w = self.w[name]
        w[0] += 1
        w[1] += cost
        w[2] += extra

    def _split(self, row: AuditRow, cost: float, rates: Rates | None) -> tuple[float, float]:
        """The row's cost split into input and output parts."""
        if rates is not None:
            in_part = rates.cost(row.input_tokens, 0, row.cached_tokens)
            out_part = row.output_tokens * rates.output
        else:
            in_part = float(row.input_tokens)
            out_part = row.output_tokens * OUTPUT_PRICE_RATIO
        whole = in_part + out_part
        if whole <= 0:
            return cost, 0.0
        return cost * in_part / whole, cost * out_part / whole

    def _route(self, row: AuditRow, cost: float, rates: Rates | None) -> None:
        cheap = self.rates(self.s.cheap_model)
        if cheap is None or row.error or row.model == self.s.cheap_model:
            return
        cheap_cost = cheap.cost(row.input_tokens, row.output_tokens, row.cached_tokens)
        if cheap_cost < cost:
            self._bump("routable", cost, (cost - cheap_cost) * self.s.routable_share)

    def _repeats(self, row: AuditRow, cost: float, in_cost: float) -> None:
        assert row.fingerprint is not None
        self.w["with_body"][0] += 1
        self.w["with_body"][1] += cost
        if row.temperature == 0:
            self._bump("deterministic", cost)
        repeat = self.seen.add(row.fingerprint)
        if repeat:
            self._bump("exact", cost)
            self.repeated.add(row.fingerprint, cost, (row.prompt_text or "")[:160])
        elif row.question is not None and row.namespace is not None and row.question_digest is not None:
            self.sampling_questions += row.temperature is None or row.temperature > 0
            self.samples.add(QuestionSample(row.question, cost, row.namespace, row.question_digest, self.n))
        elif row.question_skip is not None:
            self.question_skips[row.question_skip] = self.question_skips.get(row.question_skip, 0) + 1
        if row.ts is not None:
            k = (row.fingerprint, row.key)
            prev = self.recent.get(k)
            if prev is not None and row.ts - prev[0] <= self.s.retry_window_s:
                self._bump("retry", cost)
                if prev[1] or row.finish_reason == "length":
                    self._bump("retry_after_error", cost)
            self.recent[k] = (row.ts, row.error or row.finish_reason == "length")
            self.recent.move_to_end(k)
            while self.recent:
                oldest_key, (oldest_ts, _) = next(iter(self.recent.items()))
                if row.ts - oldest_ts > self.s.retry_window_s or len(self.recent) > 200_000:
                    self.recent.popitem(last=False)
                else:
                    break
        if row.system_hash is not None:
            sys_tokens = min(row.system_chars / CHARS_PER_TOKEN, float(row.input_tokens or 1e18))
            if self.systems.add(hashlib.blake2b(row.system_hash + row.model.encode(), digest_size=16).digest()):
                share = sys_tokens / row.input_tokens if row.input_tokens else 0.0
                self._bump("system", in_cost * share, sys_tokens)
                if sys_tokens >= self.s.min_cacheable_prefix_tokens and row.cached_tokens < sys_tokens:
                    rates = self.rates(row.model)
                    discount = 1 - rates.cache_read / rates.input if rates and rates.input else 0.5
                    uncached = (sys_tokens - row.cached_tokens) / row.input_tokens if row.input_tokens else 0
                    self._bump("system_cacheable", in_cost * share, in_cost * uncached * discount)

    # -- results -------------------------------------------------------------------------

    def run(self, items: Iterable[AuditRow | TaskOutcome]) -> None:
        for item in items:
            self.add(item)

    def finish(self, source: str = "", fmt: str = "", bad: BadLines | None = None) -> Audit:
        started = time.perf_counter()
        bad = bad or BadLines()
        total = self.total or 1e-300
        near = self._near_duplicates()
        long_req, long_cost, long_excess = self._long_outputs()
        w = self.w
        waste: dict[str, dict[str, Any]] = {
            "exact_duplicates": {"requests": int(w["exact"][0]), "cost": w["exact"][1]},
            "near_duplicates": near,
            "retries": {
                "requests": int(w["retry"][0]), "cost": w["retry"][1],
                "after_error": int(w["retry_after_error"][0]), "after_error_cost": w["retry_after_error"][1],
                "window_s": self.s.retry_window_s,
            },
            "repeated_system_prompt": {
                "requests": int(w["system"][0]), "cost": w["system"][1], "tokens": int(w["system"][2]),
                "cacheable_requests": int(w["system_cacheable"][0]),
            },
            "truncated": {"requests": int(w["truncated"][0]), "cost": w["truncated"][1]},
            "long_outputs": {"requests": long_req, "cost": long_cost, "excess_cost": long_excess,
                             "factor": self.s.long_output_factor},
            "errors": {"requests": int(w["errors"][0]), "cost": w["errors"][1]},
        }  # fmt: skip
        cacheable_cost = w["exact"][1] - w["retry_after_error"][1] + near.get("estimated_cost", 0.0)
        cacheable_req = w["exact"][0] - w["retry_after_error"][0] + near.get("estimated_requests", 0)
        cacheable = {
            "requests": int(cacheable_req),
            "request_share": cacheable_req / self.n if self.n else 0.0,
            "cost": cacheable_cost,
            "cost_share": cacheable_cost / total,
            "deterministic_requests": int(w["deterministic"][0]),
            "requests_with_body": int(w["with_body"][0]),
        }
        levers = self._levers(near, long_excess, total)
        outcomes = {t: ok for t, ok in self.outcomes.items() if t in self.task_cost}
        successes = sum(1 for ok in outcomes.values() if ok)
        task_total = sum(self.task_cost.values())
        tasks = {
            "tasks": len(self.task_cost),
            "requests_untracked_over_cap": self.task_overflow,
            "with_outcome": len(outcomes),
            "successful": successes,
            "cost_per_request": self.total / self.n if self.n else None,
            "cost_per_task": task_total / len(self.task_cost) if self.task_cost else None,
            "cost_per_successful_task": (
                sum(self.task_cost[t] for t in outcomes) / successes if successes else None
            ),
        }
        audit = Audit(
            source=source, format=fmt, rows=self.n, bad_lines=bad.count, bad_examples=list(bad.examples),
            first_ts=self.first_ts, last_ts=self.last_ts, total_cost=self.total,
            priced_rows=self.priced, unpriced_rows=self.unpriced, unknown_models=self.rates.unknown_models(),
            input_tokens=self.tokens[0], cached_tokens=self.tokens[1], output_tokens=self.tokens[2],
            by_model=_rows(self.by_model, total), by_route=_rows(self.by_route, total),
            by_feature=_rows(self.by_feature, total), by_key=_rows(self.by_key, total),
            by_day=sorted(_rows(self.by_day, total), key=lambda r: r["name"]),
            top_drivers=self._drivers(total), top_repeated=self._repeated(),
            waste=waste, cacheable=cacheable, levers=levers,
            latency_ms={f"p{int(q * 100)}": self.latency.quantile(q) for q in (0.5, 0.9, 0.99)},
            tasks=tasks, ledger_savings=dict(sorted(self.ledger_savings.items(), key=lambda kv: -kv[1])),
            settings=asdict(self.s),
        )  # fmt: skip
        audit.elapsed_s = time.perf_counter() - started
        return audit

    def _drivers(self, total: float) -> list[dict[str, Any]]:
        out = []
        for name, agg in self.drivers.top(10):
            parts = name.split("\x1f") if "\x1f" in name else [name, "-", "-", "-"]
            out.append({
                "model": parts[0], "route": parts[1], "feature": parts[2], "key": parts[3],
                "requests": agg.requests, "cost": agg.cost, "share": agg.cost / total,
            })  # fmt: skip
        return out

    def _repeated(self) -> list[dict[str, Any]]:
        return [
            {"prompt": e.label, "repeats": e.count, "cost": e.weight - e.error}
            for e in self.repeated.top(10)
            if e.count > 0
        ]

    def _long_outputs(self) -> tuple[int, float, float]:
        n, cost, excess = 0, 0.0, 0.0
        for hist in self.out_hist.values():
            median = hist.quantile(0.5)
            if not median or hist.total < 20:
                continue
            c, tokens, out_cost = hist.above(median * self.s.long_output_factor)
            if c == 0 or tokens <= 0:
                continue
            n += c
            cost += out_cost
            kept = min(tokens, c * median * self.s.cap_to_factor)
            excess += out_cost * (1 - kept / tokens)
        return n, cost, excess

    def _near_duplicates(self) -> dict[str, Any]:
        sample = self.samples.items
        info: dict[str, Any] = {
            "method": (
                f"semantic cache's question and namespace; top {self.s.near_dup_top_k} earlier questions at "
                f"cosine >= {self.s.near_dup_min_cosine}; the shipped verifier on the part where they differ"
            ),
            "distinct_prompts": self.samples.seen,
            "sampled": len(sample),
            "candidates": 0,
            "accepted": 0,
            "matches": 0,
            "rate": 0.0,
            "estimated_requests": 0,
            "estimated_cost": 0.0,
            "accepted_examples": [],
            "refused_examples": [],
            "refused_by": {},
            "not_eligible": dict(sorted(self.question_skips.items(), key=lambda kv: -kv[1])),
            "sampling_questions": self.sampling_questions,
            "status": "ok",
        }
        if not sample or self.s.near_dup_sample <= 0:
            info["status"] = "skipped: no questions in the log" if not sample else "skipped: turned off"
            return info
        if len(sample) < 2:
            return info
        embed = self._embed
        try:
            from thrifty.cache.verifier import default_verifier

            verifier = default_verifier()
            if embed is None:
                from thrifty.embed import shared_embedder

                embed = shared_embedder().embed
        except Exception as exc:  # the model files are optional at audit time
            info["status"] = f"skipped: embedder or verifier unavailable ({exc})"
            return info
        found = near_duplicates(
            sample, embed, verifier, top_k=self.s.near_dup_top_k,
            min_cosine=self.s.near_dup_min_cosine, threshold=self.s.verifier_threshold,
        )  # fmt: skip
        self.near_pairs = found.pop("matched_pairs")
        k = found["matches"]
        rate = k / len(sample)
        est_requests = int(round(rate * self.samples.seen))
        mean_cost = found["match_cost"] / k if k else 0.0
        info.update(found)
        info.update(rate=rate, estimated_requests=est_requests, estimated_cost=mean_cost * est_requests)
        return info

    def _levers(self, near: dict[str, Any], long_excess: float, total: float) -> list[Lever]:
        s, w = self.s, self.w
        exact_saving = w["exact"][1] - w["retry_after_error"][1]
        sampled = near.get("sampled", 0)
        scope = (
            "all distinct questions"
            if sampled >= near.get("distinct_prompts", 0)
            else f"a uniform sample of {sampled:,} of {near.get('distinct_prompts', 0):,} distinct questions, "
            "scaled to all of them; pairs outside the sample are not seen, so this is a lower bound"
        )
        sampling = near.get("sampling_questions", 0)
        measure = "`thrifty audit LOG --measure N --config candidate.yaml --judge MODEL` replays a sample through it and grades it"
        semantic_cost = near.get("estimated_cost", 0.0)
        levers = [
            Lever(
                "cache", exact_saving, exact_saving / total,
                f"{int(w['exact'][0]):,} requests repeat an earlier request exactly",
                "every exact repeat is served from the cache (its TTL covers the gap) except repeats "
                f"of a failed or truncated call; duplicates are found with a Bloom filter "
                f"({self.seen.fp_rate:.1%} false-positive rate at {self.seen.capacity:,} requests)",
                basis="measured",
            ),
            Lever(
                "semantic_cache", semantic_cost, semantic_cost / total,
                f"~{near.get('estimated_requests', 0):,} requests ask an earlier question in other words "
                f"(the verifier accepted {near.get('matches', 0):,} of {sampled:,} sampled questions)",
                f"{near.get('method', '')}; measured on {scope}; the verifier's precision on held-out QQP "
                "pairs is about 0.93, so a few accepted pairs differ"
                + (f"; {sampling:,} sampled questions sample (temperature > 0 or unset): the route must set "
                   "allow_sampling for those" if sampling else "")
                + "; status: " + str(near.get("status")),
                basis="verified",
            ),
            Lever(
                "dedup", w["retry"][1] - w["retry_after_error"][1],
                (w["retry"][1] - w["retry_after_error"][1]) / total,
                f"{int(w['retry'][0]):,} requests repeat the same key's request within {s.retry_window_s:.0f}s",
                "client retries of a call that did not fail share one upstream call (overlaps the cache "
                "lever: not additive with it)",
                basis="measured",
            ),
            Lever(
                "prompt_caching", w["system_cacheable"][2], w["system_cacheable"][2] / total,
                f"{int(w['system'][2]):,} system-prompt tokens were sent again (~{CHARS_PER_TOKEN:g} chars a token)",
                f"the repeats are counted; that the provider's prompt cache still holds the prefix when it "
                f"comes again is assumed; only system prompts of at least {s.min_cacheable_prefix_tokens} "
                "tokens are cached; cached tokens are billed at the catalog's cache-read rate (50% off when "
                "unknown); canonicalize keeps the prefix stable",
                basis="assumed",
                next_step="replay the log through a config with canonicalize on and read cached_input_tokens in the ledger",
            ),
            Lever(
                "cap", long_excess, long_excess / total,
                f"outputs over {s.long_output_factor:g}x their feature's median length",
                f"a cap at {s.cap_to_factor:g}x the median output loses nothing the user needed; "
                "groups under 20 requests are skipped",
                basis="assumed",
                next_step=measure,
            ),
            Lever(
                "route", w["routable"][2], w["routable"][2] / total,
                f"{int(w['routable'][0]):,} requests ran on models pricier than {s.cheap_model}",
                f"a router moves {s.routable_share:.0%} of them to {s.cheap_model} at its catalog price "
                "with no loss of quality; nothing in the log shows either",
                basis="assumed",
                next_step=measure,
            ),
        ]  # fmt: skip
        return sorted(levers, key=lambda lv: (lv.basis == "assumed", -lv.saving))


def _rows(groups: Groups, total: float) -> list[dict[str, Any]]:
    return [
        {
            "name": name, "requests": agg.requests, "cost": agg.cost, "share": agg.cost / total,
            "input_tokens": agg.input_tokens, "output_tokens": agg.output_tokens, "errors": agg.errors,
        }
        for name, agg in groups.top()
    ]  # fmt: skip
