"""The continuous-batching scheduler: every active sequence advances in one llama_decode per step.

A single engine thread owns the llama.cpp context. Between steps it drops cancelled
requests, admits waiting ones (reusing cached prefixes), then builds one batch holding the
next token of every decoding sequence (plus prompt-lookup drafts to verify) and a bounded
chunk of prompt tokens for sequences still prefilling, so a long new prompt never stalls
the ones already streaming. Results go back to each request's sink, which hands them to
the asyncio loop that waits for them; the event loop itself never blocks on the engine.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

from thrifty.engine.llama import LlamaModel
from thrifty.engine.lookup import PromptLookup
from thrifty.engine.prefix_cache import PrefixCache
from thrifty.engine.sampling import Sampler, SamplingParams
from thrifty.engine.settings import EngineSettings
from thrifty.engine.text import TextStream

log = logging.getLogger(__name__)

#: Seconds of history behind the tokens/s figure.
_RATE_WINDOW = 10.0


class EngineError(Exception):
    """A request the engine refuses: `status` 400 (bad input) or 429 (overloaded)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass
class Delta:
    """New text of one sequence (possibly empty when the tokens are held back for a stop)."""

    text: str
    tokens: int


@dataclass
class Done:
    """The end of a sequence, with its token counts."""

    finish_reason: str  # stop | length | error | cancelled
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    text: str = ""
    ttft: float | None = None
    error: str | None = None
    drafted: int = 0
    accepted: int = 0
    #: Per output token, the lead of the best logit over the next (when record_margins).
    margins: list[float] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)


Event = Delta | Done
Sink = Callable[[Event], None]


@dataclass
class Request:
    prompt: list[int]
    params: SamplingParams
    sink: Sink
    id: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


class _Sequence:
    def __init__(self, req: Request, seq_id: int, cached: int, settings: EngineSettings) -> None:
        self.req = req
        self.seq_id = seq_id
        self.kv: list[int] = req.prompt[:cached]  # tokens whose KV sits at positions 0..len-1
        self.todo: list[int] = req.prompt[cached:]  # prompt tokens still to prefill
        self.cached = cached
        self.last: int | None = None  # sampled, not yet in the KV cache
        self.output: list[int] = []
        self.sampler = Sampler(req.params)
        self.text = TextStream(req.params.stop)
        use_lookup = settings.prompt_lookup if req.params.prompt_lookup is None else req.params.prompt_lookup
        self.lookup = (
            PromptLookup(req.prompt, settings.lookup_ngram_min, settings.lookup_ngram_max) if use_lookup else None
        )
        self.pending = ""
        self.pending_tokens = 0
        self.first_token_at: float | None = None
        self.finish: str | None = None
        self.error: str | None = None
        self.drafted = 0
        self.accepted = 0
        self.margins: list[float] = []

    @property
    def reserve(self) -> int:
        return len(self.req.prompt) + self.req.params.max_tokens + 1


class Engine:
    """Owns one model and its engine thread; thread-safe `submit` and `cancel`."""

    def __init__(self, model: LlamaModel, settings: EngineSettings) -> None:
        self.model = model
        self.settings = settings
        self.draft_max = settings.lookup_draft_tokens
        self.n_ctx = min(model.n_ctx, model.n_ctx_train or model.n_ctx)
        self.cache = PrefixCache(settings.prefix_cache_slots, settings.prefix_cache_tokens)
        self._free_ids = list(range(model.n_seq - 1, -1, -1))
        self._waiting: deque[Request] = deque()
        self._active: list[_Sequence] = []
        self._cond = threading.Condition()
        self._ids = count(1)
        self._stop = False
        self._dirty = False  # a cancel arrived
        self._flush_cache = False
        self._rate: deque[tuple[float, int]] = deque()
        self._request_seconds = 2.0
        self.totals = {
            "requests": 0,
            "rejected": 0,
            "prompt_tokens": 0,
            "cached_tokens": 0,
            "output_tokens": 0,
            "drafted_tokens": 0,
            "accepted_tokens": 0,
            "steps": 0,
        }
        self._thread = threading.Thread(target=self._run, name="thrifty-engine", daemon=True)
        self._thread.start()

    # -- API (any thread) ----------------------------------------------------------------

    def context_limit(self) -> int:
        """Longest prompt the engine accepts, in tokens."""
        return self.n_ctx - self.draft_max - 2

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Request:
        if not prompt:
            raise EngineError(400, "the prompt is empty")
        limit = self.context_limit()
        if len(prompt) > limit:
            raise EngineError(
                400,
                f"the prompt is {len(prompt)} tokens; the local model accepts at most {limit} "
                f"(context {self.n_ctx} tokens, engine.n_ctx)",
            )
        params.max_tokens = max(1, min(params.max_tokens, self.n_ctx - len(prompt) - self.draft_max - 1))
        req = Request(prompt=prompt, params=params, sink=sink)
        with self._cond:
            depth = len(self._waiting) + len(self._active)
            if depth >= self.settings.max_active + self.settings.max_queue:
                self.totals["rejected"] += 1
                raise EngineError(429, "the local engine is at capacity; retry later", self._retry_after())
            req.id = next(self._ids)
            self._waiting.append(req)
            self.totals["requests"] += 1
            self._cond.notify()
        return req

    def cancel(self, req: Request) -> None:
        """Stop `req` (the client went away); its sequence and KV are freed before the next step."""
        with self._cond:
            req.cancelled = True
            self._dirty = True
            self._cond.notify()

    def clear_cache(self) -> None:
        """Forget every cached prefix (done by the engine thread before its next step)."""
        with self._cond:
            self._flush_cache = True
            self._dirty = True
            self._cond.notify()

    def queue_depth(self) -> int:
        return len(self._waiting)

    def should_spill(self) -> bool:
        """Whether routing should send this request elsewhere: the wait queue is too deep."""
        limit = self.settings.spill_queue_depth
        return limit > 0 and self.queue_depth() >= limit

    def stats(self) -> dict[str, float]:
        with self._cond:
            rate = self._tokens_per_second()
            out: dict[str, float] = {
                "queue_depth": float(len(self._waiting)),
                "active_sequences": float(len(self._active)),
                "cached_sequences": float(len(self.cache)),
                "cached_prefix_tokens": float(self.cache.tokens),
                "tokens_per_second": rate,
                "spill": 1.0 if self.should_spill() else 0.0,
            }
            out.update({k: float(v) for k, v in self.totals.items()})
        return out

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self.model.close()

    # -- engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._stop or self._dirty or self._waiting or self._active):
                    self._cond.wait()
                if self._stop:
                    break
                self._drop_cancelled()
                self._admit()
            if self._active:
                try:
                    self._step()
                except Exception as exc:  # never let the engine thread die silently
                    log.exception("engine step failed")
                    for seq in list(self._active):
                        self._retire(seq, "error", error=str(exc))
        for seq in list(self._active):
            self._retire(seq, "error", error="engine shut down")
        for req in self._waiting:
            req.sink(Done("error", len(req.prompt), 0, 0, error="engine shut down"))
        self._waiting.clear()

    def _drop_cancelled(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if self._flush_cache:
            self._flush_cache = False
            for sid in self.cache.clear():
                self._free(sid)
        self._waiting = deque(r for r in self._waiting if not r.cancelled)
        for seq in list(self._active):
            if seq.req.cancelled:
                self._retire(seq, "cancelled", keep=False)

    def _reserved(self) -> int:
        return sum(s.reserve for s in self._active)

    def _admit(self) -> None:
        s = self.settings
        while self._waiting and len(self._active) < s.max_active:
            req = self._waiting[0]
            need = len(req.prompt) + req.params.max_tokens + 1
            if self._reserved() + need > self.n_ctx:
                break  # wait for running sequences to finish
            if not self._free_ids:
                if not len(self.cache):
                    break
                self._free(self.cache.pop_lru())
            self._waiting.popleft()
            seq_id = self._free_ids.pop()
            entry, common = self.cache.lookup(req.prompt, s.prefix_min_tokens)
            common = min(common, len(req.prompt) - 1)  # always prefill one token to get logits
            common -= common % s.prefill_chunk  # keep prefill chunks where a fresh run puts them
            if entry is not None and common > 0:
                self.model.seq_cp(entry.seq_id, seq_id, 0, common)
            else:
                common = 0
            seq = _Sequence(req, seq_id, common, s)
            self._active.append(seq)
            while len(self.cache) and self._reserved() + self.cache.tokens > self.n_ctx:
                self._free(self.cache.pop_lru())
            self.totals["prompt_tokens"] += len(req.prompt)
            self.totals["cached_tokens"] += common

    def _free(self, seq_id: int) -> None:
        self.model.seq_rm(seq_id, -1, -1)
        self._free_ids.append(seq_id)

    def _step(self) -> None:
        """One decode batch for every decoding sequence, then a bounded amount of prefill."""
        emitted = 0
        decoding = [q for q in self._active if q.last is not None]
        if decoding:
            plan = self._plan_decode(decoding)
            if self._decode(decoding):
                for seq, start, toks in plan:
                    emitted += self._after_decode(seq, start, toks)
        emitted += self._prefill(self.settings.prefill_per_step if decoding else self.settings.n_batch)
        now = time.perf_counter()
        for seq in list(self._active):
            if seq.pending or seq.pending_tokens:
                seq.req.sink(Delta(seq.pending, seq.pending_tokens))
                seq.pending, seq.pending_tokens = "", 0
            if seq.finish is not None:
                self._retire(seq, seq.finish, error=seq.error)
        with self._cond:
            self.totals["steps"] += 1
            self.totals["output_tokens"] += emitted
            self._rate.append((now, emitted))
            while self._rate and self._rate[0][0] < now - _RATE_WINDOW:
                self._rate.popleft()

    def _prefill(self, budget: int) -> int:
        """Prefill up to `budget` prompt tokens; returns the first tokens sampled.

        Each llama_decode holds the next aligned chunk of every sequence still prefilling
        (as many as the batch holds), not one sequence's: eight new requests cost one pass
        over the weights, not eight. Chunks never cross a multiple of `prefill_chunk`, so
        a sequence's KV is the same whoever shares its batch.
        """
        emitted = 0
        chunk_size = self.settings.prefill_chunk
        while budget > 0:
            entries: list[tuple[int, int, int, bool]] = []
            plan: list[tuple[_Sequence, list[int], int]] = []
            for seq in self._active:
                if not seq.todo or seq.finish is not None:
                    continue
                pos = len(seq.kv)
                n = min((pos // chunk_size + 1) * chunk_size - pos, len(seq.todo))
                if len(entries) + n > self.model.capacity:
                    break
                chunk = seq.todo[:n]
                final = n == len(seq.todo)
                entries.extend((t, pos + j, seq.seq_id, final and j == n - 1) for j, t in enumerate(chunk))
                plan.append((seq, chunk, len(entries) - 1))
                budget -= n
                if budget <= 0:
                    break
            if not plan:
                break
            self.model.set_batch(entries)
            if not self._decode([seq for seq, _, _ in plan]):
                break
            for seq, chunk, row in plan:
                emitted += self._after_prefill(seq, chunk, row)
        return emitted

    def _plan_decode(self, decoding: list[_Sequence]) -> list[tuple[_Sequence, int, list[int]]]:
        """Fill the batch with each sequence's last token plus its prompt-lookup draft."""
        plan: list[tuple[_Sequence, int, list[int]]] = []
        entries: list[tuple[int, int, int, bool]] = []
        for seq in decoding:
            assert seq.last is not None
            toks = [seq.last]
            left = seq.req.params.max_tokens - len(seq.output)
            room = min(self.draft_max, left - 1, self.n_ctx - len(seq.kv) - 2)
            if seq.lookup is not None and room > 0:
                toks += seq.lookup.draft(room)
            plan.append((seq, len(entries), toks))
            pos = len(seq.kv)
            entries.extend((t, pos + j, seq.seq_id, True) for j, t in enumerate(toks))
        self.model.set_batch(entries)
        return plan

    def _decode(self, involved: list[_Sequence]) -> bool:
        """Run the prepared batch; on failure the involved sequences end with an error."""
        rc = self.model.decode()
        while rc == 1 and len(self.cache):  # KV full: give up cached prefixes first
            self._free(self.cache.pop_lru())
            rc = self.model.decode()
        if rc == 0:
            return True
        for seq in involved:
            seq.finish = "error"
            seq.error = f"llama_decode failed ({rc}): the KV cache is full"
        return False

    def _after_prefill(self, seq: _Sequence, chunk: list[int], row: int) -> int:
        seq.kv.extend(chunk)
        del seq.todo[: len(chunk)]
        if seq.todo:
            return 0
        seq.first_token_at = time.perf_counter()
        self._take(seq, self._sample(seq, row))
        return 1

    def _after_decode(self, seq: _Sequence, start: int, toks: list[int]) -> int:
        draft = toks[1:]
        written_end = len(seq.kv) + len(toks)
        seq.kv.append(toks[0])
        taken = 0
        while True:
            tok = self._sample(seq, start + taken)
            taken += 1
            self._take(seq, tok)
            if seq.finish is not None or taken > len(draft) or tok != draft[taken - 1]:
                break
            seq.kv.append(tok)  # the draft token was right: its KV is already computed
        seq.drafted += len(draft)
        seq.accepted += taken - 1
        if len(seq.kv) < written_end:  # drop the KV of rejected drafts
            self.model.seq_rm(seq.seq_id, len(seq.kv), -1)
        return taken

    def _sample(self, seq: _Sequence, row: int) -> int:
        logits = self.model.logits(row)
        if seq.req.params.record_margins:
            seq.margins.append(Sampler.margin(logits))
        return seq.sampler.sample(logits)

    def _take(self, seq: _Sequence, tok: int) -> None:
        """Emit one sampled token and decide whether the sequence is done."""
        seq.pending_tokens += 1
        if self.model.is_eog(tok):
            seq.output.append(tok)
            seq.finish = "stop"
            seq.last = None
            return
        seq.output.append(tok)
        seq.last = tok
        seq.pending += seq.text.feed(self.model.piece(tok))
        if seq.lookup is not None:
            seq.lookup.add(tok)
        if seq.text.stopped:
            seq.finish = "stop"
        elif len(seq.output) >= seq.req.params.max_tokens or len(seq.kv) + 2 >= self.n_ctx:
            seq.finish = "length"

    def _retire(self, seq: _Sequence, reason: str, keep: bool = True, error: str | None = None) -> None:
        self._active.remove(seq)
        req = seq.req
        if reason != "cancelled":
            tail = seq.text.flush() if reason != "error" else ""
            if tail or seq.pending:
                req.sink(Delta(seq.pending + tail, seq.pending_tokens))
            seq.pending, seq.pending_tokens = "", 0
            ttft = seq.first_token_at - req.submitted if seq.first_token_at else None
            req.sink(
                Done(
                    reason,
                    len(req.prompt),
                    seq.cached,
                    len(seq.output),
                    text=seq.text.text,
                    ttft=ttft,
                    error=error,
                    drafted=seq.drafted,
                    accepted=seq.accepted,
                    margins=seq.margins,
                    token_ids=seq.output,
                )
            )
        with self._cond:
            self.totals["drafted_tokens"] += seq.drafted
            self.totals["accepted_tokens"] += seq.accepted
            elapsed = time.perf_counter() - req.submitted
            self._request_seconds = 0.8 * self._request_seconds + 0.2 * elapsed
        s = self.settings
        if keep and reason in ("stop", "length") and s.prefix_cache_slots and len(seq.kv) >= s.prefix_min_tokens:
            for sid in self.cache.add(seq.seq_id, seq.kv):
                self._free(sid)
        else:
            self._free(seq.seq_id)

    # -- figures ---------------------------------------------------------------------------

    def _tokens_per_second(self) -> float:
        if not self._rate:
            return 0.0
        now = time.perf_counter()
        span = max(now - self._rate[0][0], 1e-3)
        if now - self._rate[-1][0] > 2.0:  # idle: no tokens lately
            return 0.0
        return sum(n for _, n in self._rate) / span

    def _retry_after(self) -> float:
        waves = (len(self._waiting) + 1) / max(1, self.settings.max_active)
        return float(min(60, max(1, math.ceil(waves * self._request_seconds))))

