"""Batched ledger writes off the request path, and a promise that no row is lost.

`submit` is O(1) and never blocks the event loop. Three places hold a row on its way:

1. the *journal* (`thrifty.ledger.journal`): every row is appended to a local file within
   `durability_ms` of its submission (by a small thread; with 0, by `submit` itself), so that
   `kill -9` loses at most the rows of the last `durability_ms` (None: no journal, and a
   crash loses the rows of the last `flush_interval`);
2. the *store*: a second thread writes batches every `flush_interval` (or `batch_size` rows);
3. the *spool* (`thrifty.ledger.spool`): a batch the store refuses goes to a file, fsynced,
   and leaves memory. While the store fails, new batches go straight to the spool, trying the
   store again with backoff (at most `retry_max` seconds apart); once it answers, the spool is
   replayed in order while serving goes on. Memory holds at most `max_pending` rows: beyond
   that, rows are spooled without waiting for the store (a hung connection cannot grow memory).

The writer's `health` (`thrifty.health`) is `ready`, `degraded` (the store fails or the spool
is being replayed: rows are safe on disk) or `down` (the spool cannot be written either: rows
wait in memory). Each change is logged once, with a reminder a minute while it lasts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from thrifty.health import DEGRADED, DOWN, READY, Health
from thrifty.ledger.journal import Journal, encode
from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.spool import Spool, claim_dir
from thrifty.ledger.storable import clean_text, storable
from thrifty.ledger.store import LedgerStore

log = logging.getLogger(__name__)

Listener = Callable[[LedgerRecord], None]
#: A row on its way to the store: (journal segment, record, its journal line).
_Item = tuple[int, LedgerRecord, bytes]




class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        *,
        spool_dir: str | Path,
        flush_interval: float = 0.25,
        batch_size: int = 512,
        durability_ms: float | None = 10.0,
        fsync: bool = False,
        max_pending: int = 20_000,
        retry_max: float = 2.0,
        adopt: tuple[Path, ...] = (),
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.durability = durability_ms / 1000.0 if durability_ms is not None else None
        self.max_pending = max_pending
        self.retry_max = retry_max
        self.spool_dir, lock = claim_dir(Path(spool_dir))
        self._dir_lock: int | None = lock
        self.journal = Journal(self.spool_dir, fsync=fsync, rotate_every=max(flush_interval, 0.05))
        self.journaling = durability_ms is not None
        self.spool = Spool(self.spool_dir / "spool.jsonl")
        self.health = Health("ledger store", log)
        #: Rows submitted, not journaled yet (only with durability_ms > 0).
        self._incoming: deque[LedgerRecord] = deque()
        #: Journaled rows waiting for the store.
        self._queue: deque[_Item] = deque()
        #: Held while rows move between the queues, the journal and `_in_flight`, so that
        #: `pending` never misses one and journal order is queue order.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._tick = threading.Event()
        self._stop = False
        self._listeners: list[Listener] = []
        self._idle = threading.Condition()
        self._in_flight = 0
        self._encoding = 0
        self._retry_at = 0.0
        self._backoff = flush_interval
        self.written = 0
        self.failures = 0
        #: Rows sent to the spool since start.
        self.spooled = 0
        self._adopt_leftovers(adopt)
        if self.spool.rows:
            self._replay(until_empty=True)
        self._thread = threading.Thread(target=self._run, name="thrifty-ledger", daemon=True)
        self._thread.start()
        self._journal_thread: threading.Thread | None = None
        if self.durability:
            self._journal_thread = threading.Thread(target=self._run_journal, name="thrifty-journal", daemon=True)
            self._journal_thread.start()

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(record)` for each submitted record (on the submitter's thread)."""
        self._listeners.append(callback)

    def submit(self, record: LedgerRecord) -> None:
        for cb in self._listeners:
            try:
                cb(record)
            except Exception:  # a broken listener must not lose the row
                log.exception("ledger listener failed")
        if self.durability:
            self._incoming.append(record)
            return
        if not self.journaling:
            self._queue.append((0, record, b""))
            if len(self._queue) >= self.batch_size:
                self._wake.set()
            return
        line = encode(record)
        with self._lock:
            segment = self.journal.append([line])
            self._queue.append((segment, record, line))
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows not in the store yet: in memory or in the spool."""
        with self._lock:
            return len(self._incoming) + self._encoding + len(self._queue) + self._in_flight + self.spool.rows

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted row is in the store; False if that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        self._tick.set()
        self._wake.set()
        with self._idle:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._tick.set()
                self._wake.set()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write everything, stop the threads, and spool what the store would not take."""
        self.flush(timeout)
        self._stop = True
        self._tick.set()
        if self._journal_thread is not None:
            self._journal_thread.join(timeout)
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            left = [encode(r) for r in self._incoming] + [line or encode(r) for _, r, line in self._queue]
            self._incoming.clear()
            self._queue.clear()
        if left:
            self.spool.append(left)
            log.error("wrote %d ledger rows the store refused to %s; they are replayed at the next start",
                      len(left), self.spool.path)
        self.journal.discard_all()  # every row is in the store or the spool now
        if self._dir_lock is not None:  # close may be called twice (a test, then the gateway)
            os.close(self._dir_lock)
            self._dir_lock = None
        self.store.close()

    # -- the journal thread ----------------------------------------------------------------

    def _run_journal(self) -> None:
        while True:
            self._tick.wait(self.durability or 0.01)
            self._tick.clear()
            stopping = self._stop
            self._journal_incoming()
            if stopping:
                return

    def _journal_incoming(self) -> None:
        if not self._incoming:
            return
        records = []
        with self._lock:  # counted in `pending` from here until they are queued or spooled
            while self._incoming:
                records.append(self._incoming.popleft())
            self._encoding = len(records)
        lines = [encode(r) for r in records]
        overflow: list[bytes] = []
        with self._lock:
            segment = self.journal.append(lines)
            self._encoding = 0
            room = self.max_pending - len(self._queue) - self._in_flight
            if room >= len(records):
                self._queue.extend(zip([segment] * len(records), records, lines, strict=True))
                records = []
            else:  # the store is too slow or hung: the rest goes to disk, not memory
                keep = max(room, 0)
                self._queue.extend(zip([segment] * keep, records[:keep], lines[:keep], strict=True))
                overflow = lines[keep:]
                self._encoding = len(overflow)
        if overflow:
            spooled = self._to_spool(overflow, "memory bound reached (ledger.max_pending)")
            with self._lock:
                if not spooled:  # no disk either: memory it is, never a dropped row
                    self._queue.extend(zip([segment] * len(overflow), records[len(records) - len(overflow):],
                                           overflow, strict=True))
                self._encoding = 0
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    # -- the store thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stop
            if self.spool.rows and time.monotonic() >= self._retry_at:
                self._replay(until_empty=False)
            while self._queue:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))]
                    self._in_flight = len(batch)
                if not self._store_batch(batch):
                    with self._lock:
                        self._queue.extendleft(reversed(batch))
                        self._in_flight = 0
                    break
                with self._lock:
                    self._in_flight = 0
                if self.journaling:
                    self.journal.discard_before(batch[-1][0])
                with self._idle:
                    self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()
            if stopping:
                return

    def _store_batch(self, batch: list[_Item]) -> bool:
        """Write `batch` to the store, or else to the spool. False if neither took it."""
        if time.monotonic() >= self._retry_at and self._write([r for _, r, _ in batch]):
            self.written += len(batch)
            return True
        return self._to_spool([line or encode(r) for _, r, line in batch], self.health.reason or "the store fails")

    def _write(self, records: list[LedgerRecord]) -> bool:
        try:
            try:
                self.store.write([storable(r) for r in records])
            except (UnicodeError, TypeError, ValueError):
                # Text the store cannot encode (lone surrogates from a header that was not
                # UTF-8): write it with replacement characters rather than never.
                self.store.write([clean_text(r) for r in records])
        except Exception as exc:
            self.failures += 1
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.retry_max)
            reason = f"{exc.__class__.__name__}: {str(exc).strip()[:200]}"
            self.health.set(DOWN if self.health.state == DOWN else DEGRADED,
                            f"{reason}; rows go to {self.spool.path}, retried every {self.retry_max:.0f}s at most")
            return False
        self._backoff = self.flush_interval
        self._retry_at = 0.0
        if not self.spool.rows:
            self.health.set(READY)
        return True

    def _to_spool(self, lines: list[bytes], reason: str) -> bool:
        try:
            self.spool.append(lines)
        except OSError as exc:
            self.health.set(DOWN, f"the store fails and the spool {self.spool.path} cannot be written ({exc}); "
                                  "rows wait in memory")
            return False
        self.spooled += len(lines)
        if self.health.state == READY:
            self.health.set(DEGRADED, reason)
        return True

    def _replay(self, *, until_empty: bool) -> None:
        """Write spooled rows to the store in order; stop at the first failure."""
        rounds = 0
        while self.spool.rows and (until_empty or rounds < 8):
            records, offset = self.spool.read(self.batch_size)
            if not records and offset == 0:
                break
            if records and not self._write(records):
                return
            self.spool.advance(offset, len(records))
            self.written += len(records)
            rounds += 1
            if not records:
                break
        if not self.spool.rows:
            if self.spooled or until_empty:
                log.warning("ledger: the spool is replayed; every row is in the store")
            self.health.set(READY)
            with self._idle:
                self._idle.notify_all()

    def _adopt_leftovers(self, adopt: tuple[Path, ...] = ()) -> None:
        """Move the journal segments a crash left behind, and the files in `adopt` (spill files
        of older versions), into the spool (replayed next)."""
        moved = 0
        for path in [*(p for p in adopt if p.exists()), *map(self.journal.path, self.journal.segments())]:
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]  # a row cut by the crash: never complete
            lines = data.splitlines(keepends=True)
            self.spool.append(lines)
            moved += len(lines)
            path.unlink()
        if moved:
            log.warning("ledger: %d rows left by a process that did not stop cleanly (its journal, or an old "
                        "spill file); replaying them", moved)
