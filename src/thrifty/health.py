"""The health of one dependency (ledger store, Redis, an upstream), and how an outage is logged.

An outage must be readable in the log: one line when a dependency changes state, then one
reminder every `remind_every` seconds while it stays unhealthy (saying how many failures were
not logged in between), never a traceback per request. A dependency that flaps (a Redis
answering just past its deadline now and then) logs at most one line per `min_interval`. `/readyz` and `/metrics` read the
same objects (see `thrifty.server.readiness`).

States, from best to worst:
- `ready`: working.
- `degraded`: not working as configured, but requests are served and nothing is lost
  (a cache that is skipped, ledger rows waiting in the spool file).
- `down`: requests fail, or a promise breaks (ledger rows held only in memory).
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["DEGRADED", "DOWN", "READY", "STATES", "DependencyUnavailable", "Health", "worst"]

READY = "ready"
DEGRADED = "degraded"
DOWN = "down"
#: States in order of severity; `/metrics` exports the index as a gauge (0 ready, 1, 2 down).
STATES = (READY, DEGRADED, DOWN)


class DependencyUnavailable(Exception):
    """A dependency failed or was skipped (its breaker is open, its time budget spent).

    Its health has already been logged; callers treat it as "do without", quietly.
    `maybe_sent` is False when the command never left thrifty (skipped), True when it was sent
    and may still run later (a timeout on a stalled server)."""

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


def worst(states: list[str]) -> str:
    return max(states, key=STATES.index, default=READY)


class Health:
    """The state of dependency `name`; `set` logs transitions and rate-limited reminders."""

    def __init__(self, name: str, logger: logging.Logger, remind_every: float = 60.0,
                 min_interval: float = 5.0) -> None:
        self.name = name
        self.log = logger
        self.remind_every = remind_every
        self.min_interval = min_interval
        self.state = READY
        self.reason: str | None = None
        self.since = time.monotonic()
        #: State changes since start (for tests and /metrics).
        self.changes = 0
        self._last_line = float("-inf")
        self._quiet = 0
        self._lock = threading.Lock()

    def set(self, state: str, reason: str | None = None) -> None:
        """Record the current state. Logs one line on a change, and while unhealthy at most one
        reminder per `remind_every` seconds; every other call only counts."""
        now = time.monotonic()
        with self._lock:
            if state == self.state:
                if state == READY:
                    if not self._quiet or now - self._last_line < self.min_interval:
                        return
                    # the last logged line was a failure, then it flapped: say where it ended
                    line = f"{self.name}: ready ({self._quiet} changes or failures not logged before this)"
                    self._quiet = 0
                    self._last_line = now
                    self.log.warning(line)
                    return
                self._quiet += 1
                if reason:
                    self.reason = reason
                if now - self._last_line < self.remind_every:
                    return
                line = (f"{self.name}: still {state} after {now - self.since:.0f}s ({self.reason}); "
                        f"{self._quiet} failures since the last line")
                level = logging.WARNING
            else:
                previous, lasted = self.state, now - self.since
                self.state, self.reason, self.since = state, reason, now
                self.changes += 1
                if now - self._last_line < self.min_interval and DOWN not in (state, previous):
                    self._quiet += 1  # flapping: counted, told in the next line
                    return
                flaps = f" ({self._quiet} changes or failures not logged before this)" if self._quiet else ""
                if state == READY:
                    line = f"{self.name}: ready again after {lasted:.1f}s {previous}{flaps}"
                    level = logging.WARNING
                else:
                    line = f"{self.name}: {state} ({reason}){flaps}"
                    level = logging.ERROR if state == DOWN else logging.WARNING
            self._quiet = 0
            self._last_line = now
        self.log.log(level, line)

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "reason": self.reason, "for_s": round(time.monotonic() - self.since, 1)}
