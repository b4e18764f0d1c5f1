"""A local append-only journal of ledger rows, so that `kill -9` loses at most a few milliseconds.

Rows reach the store in batches every `ledger.flush_interval`; a crash in between used to lose
the batch (about `flush_interval` x rate rows). Every row is now appended to a journal file
within `ledger.durability_ms` of its submission (0: before `submit` returns), and the writer
deletes journal segments once every row in them is in the store or in the spool. At start, the
segments a crash left behind are moved to the spool and replayed. Replaying a row that did
reach the store is harmless: both stores upsert by `request_id`.

A write to the journal survives the process (it is in the OS page cache); with
`ledger.fsync: true` it is also fsynced, which survives a power cut at a higher cost.

The journal is a series of segments `journal-NNNNNNNN.jsonl`, a new one every `rotate_every`
seconds, so that a segment can be deleted whole (no rewriting in place).
"""

from __future__ import annotations

import os
import re
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from thrifty.ledger.record import LedgerRecord
from thrifty.ledger.storable import clean_text, storable

__all__ = ["Journal", "decode", "encode"]

_SEGMENT = re.compile(r"^journal-(\d{8})\.jsonl$")


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value))


def encode(record: LedgerRecord) -> bytes:
    """One JSON line for `record` (orjson writes the dataclass natively)."""
    try:
        return orjson.dumps(record, default=_default) + b"\n"
    except (TypeError, orjson.JSONEncodeError):
        # A count past 64 bits or text with lone surrogates: keep what a store could hold.
        return orjson.dumps(clean_text(storable(record)), default=_default) + b"\n"


def decode(line: bytes) -> LedgerRecord:
    data: dict[str, Any] = orjson.loads(line)
    for k in ("cost", "counterfactual_cost"):
        data[k] = Decimal(data[k])
    data["savings"] = {k: Decimal(v) for k, v in (data.get("savings") or {}).items()}
    return LedgerRecord(**data)


class Journal:
    """Append-only segments in `directory`. Thread-safe."""

    def __init__(self, directory: Path, *, fsync: bool = False, rotate_every: float = 0.25) -> None:
        self.directory = directory
        self.fsync = fsync
        self.rotate_every = rotate_every
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        existing = self.segments()
        self._number = (max(existing) + 1) if existing else 1
        self._fd: int | None = None
        self._opened = 0.0
        #: Bytes appended since start (for tests and the benchmark).
        self.appended = 0

    def path(self, number: int) -> Path:
        return self.directory / f"journal-{number:08d}.jsonl"

    def segments(self) -> list[int]:
        """Numbers of the segments on disk, oldest first."""
        found = []
        for p in self.directory.iterdir():
            m = _SEGMENT.match(p.name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def append(self, lines: list[bytes]) -> int:
        """Append `lines` (each ending in a newline); return the segment number they went to."""
        data = b"".join(lines)
        with self._lock:
            now = time.monotonic()
            if self._fd is None or now - self._opened >= self.rotate_every:
                self._rotate(now)
            assert self._fd is not None
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self._fd)
            self.appended += len(data)
            return self._number

    def _rotate(self, now: float) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._number += 1
        self._fd = os.open(self.path(self._number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._opened = now

    def discard_before(self, number: int) -> None:
        """Delete the segments older than `number` (their rows are in the store or the spool)."""
        with self._lock:
            current = self._number if self._fd is not None else None
        for n in self.segments():
            if n < number and n != current:
                self.path(n).unlink(missing_ok=True)

    def discard_all(self) -> None:
        """Close and delete every segment (at a clean shutdown, once every row is safe)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._number += 1
        for n in self.segments():
            self.path(n).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._number += 1
