"""Batched ledger writes off the request path, and a promise that no row is dropped.

`submit` is O(1) and never blocks the event loop. A background thread writes batches; a
store that fails is retried with backoff while rows stay queued, and at shutdown whatever
could still not be written goes to a JSONL spill file beside the ledger, which the next
start replays into the store.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from thrifty.ledger.record import LedgerRecord, to_pico
from thrifty.ledger.store import LedgerStore

log = logging.getLogger(__name__)

Listener = Callable[[LedgerRecord], None]


def spill_path_for(store: LedgerStore) -> Path:
    """Where rows the store refused are kept: beside a SQLite ledger file, else
    `thrifty-ledger.spill.jsonl` in the working directory."""
    path = getattr(store, "path", None)
    if path and str(path) != ":memory:":
        spill = Path(str(path))
        return spill.with_name(spill.name + ".spill.jsonl")
    return Path("thrifty-ledger.spill.jsonl")


class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        *,
        flush_interval: float = 0.25,
        batch_size: int = 512,
        spill_path: str | Path = "thrifty-ledger-spill.jsonl",
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.spill_path = Path(spill_path)
        self._queue: deque[LedgerRecord] = deque()
        #: Held while rows move between the queue and `_in_flight`, so `pending` never misses one.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._listeners: list[Listener] = []
        self._idle = threading.Condition()
        self._in_flight = 0
        self.written = 0
        self.failures = 0
        self._replay_spill()
        self._thread = threading.Thread(target=self._run, name="thrifty-ledger", daemon=True)
        self._thread.start()

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(record)` for each submitted record (on the submitter's thread)."""
        self._listeners.append(callback)

    def submit(self, record: LedgerRecord) -> None:
        self._queue.append(record)
        for cb in self._listeners:
            try:
                cb(record)
            except Exception:  # a broken listener must not lose the row
                log.exception("ledger listener failed")
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted row is written; False if that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._wake.set()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write everything, stop the thread, and spill what the store would not take."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if self._queue:
            self._spill(list(self._queue))
            self._queue.clear()
        self.store.close()

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._queue:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))]
                    self._in_flight = len(batch)
                try:
                    try:
                        self.store.write([storable(r) for r in batch])
                    except (UnicodeError, TypeError, ValueError):
                        # Text the store cannot encode (lone surrogates from a header that was
                        # not UTF-8): write it with replacement characters rather than never.
                        self.store.write([clean_text(r) for r in batch])
                    self.written += len(batch)
                    backoff = 0.1
                except Exception as exc:
                    self.failures += 1
                    log.error("ledger write of %d rows failed (%s); retrying in %.1fs", len(batch), exc, backoff)
                    with self._lock:
                        self._queue.extendleft(reversed(batch))
                        self._in_flight = 0
                    if self._stop:
                        return
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                with self._lock:
                    self._in_flight = 0
                with self._idle:
                    self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()
            if self._stop:
                return

    # -- spill file ------------------------------------------------------------------------

    def _spill(self, records: list[LedgerRecord]) -> None:
        with self.spill_path.open("ab") as f:
            for r in records:
                f.write(orjson.dumps(asdict(clean_text(storable(r))), default=_default) + b"\n")
        log.error("wrote %d ledger rows the store refused to %s; they are replayed at next start", len(records), self.spill_path)

    def _replay_spill(self) -> None:
        if not self.spill_path.exists():
            return
        records = []
        for line in self.spill_path.read_bytes().splitlines():
            if not line.strip():
                continue
            data = orjson.loads(line)
            for k in ("cost", "counterfactual_cost"):
                data[k] = Decimal(data[k])
            data["savings"] = {k: Decimal(v) for k, v in data["savings"].items()}
            records.append(LedgerRecord(**data))
        self.store.write(records)
        self.spill_path.unlink()
        log.warning("replayed %d spilled ledger rows from %s", len(records), self.spill_path)


# -- rows the store could not hold --------------------------------------------------------

_INT64 = 2**63
_COUNTS = ("status", "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "output_tokens", "reasoning_tokens")


def _fits(value: int) -> bool:
    return -_INT64 <= value < _INT64


def _pico_fits(amount: object) -> bool:
    try:
        return isinstance(amount, Decimal) and _fits(to_pico(amount))
    except (ArithmeticError, ValueError):  # NaN, infinity
        return False


#: The largest amount in USD whose picodollars fit a signed 64-bit column (about 9.2 million).
_MAX_USD = Decimal(_INT64 - 1) / Decimal(10**12)


def _plain(record: LedgerRecord) -> bool:
    """True for the usual row: small integer counts, finite amounts well inside the columns."""
    for value in (record.status, record.input_tokens, record.cache_read_tokens, record.cache_write_tokens,
                  record.cache_write_1h_tokens, record.output_tokens, record.reasoning_tokens):
        if type(value) is not int or not -_INT64 <= value < _INT64:
            return False
    for amount in (record.cost, record.counterfactual_cost):
        if type(amount) is not Decimal or not amount.is_finite() or not -_MAX_USD < amount < _MAX_USD:
            return False
    return not record.savings


def storable(record: LedgerRecord) -> LedgerRecord:
    """`record` with every number the store's 64-bit integer columns cannot hold set to 0 (the
    original kept as text in `extra["unstorable"]`): one absurd value, from a broken upstream
    or lever, must not make the store refuse the batch, which the writer would retry forever."""
    if _plain(record):
        return record
    bad: dict[str, str] = {}
    for name in _COUNTS:
        value = getattr(record, name)
        if not isinstance(value, int) or not _fits(value):
            bad[name] = str(value)
            setattr(record, name, 0)
    for name in ("cost", "counterfactual_cost"):
        if not _pico_fits(getattr(record, name)):
            bad[name] = str(getattr(record, name))
            setattr(record, name, Decimal(0))
    if not all(_pico_fits(v) for v in record.savings.values()) or not _pico_fits(sum(record.savings.values(), Decimal(0))):
        bad["savings"] = str(record.savings)
        record.savings = {}
    if bad:
        log.error("ledger row %s had values no store column can hold, written as 0: %s", record.request_id, bad)
        record.extra = {**record.extra, "unstorable": bad}
    return record


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode()
            return value
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def clean_text(record: LedgerRecord) -> LedgerRecord:
    """`record` with every string (in fields, tags, extra and bodies) made valid UTF-8."""
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str | dict | list):
            setattr(record, f.name, _clean(value))
    return record


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value))
