"""A circuit breaker per upstream: stop sending to a model that keeps failing, try again later.

closed -> (N consecutive failures) -> open for `cooldown` seconds -> half-open: one trial
request; its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thrifty.health import Health


class CircuitBreaker:
    def __init__(self, failures: int = 5, cooldown: float = 30.0, health: Health | None = None) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.consecutive = 0
        self.opened_at: float | None = None
        self._trial = False
        #: Told when the circuit opens and closes (one log line each; see thrifty.health).
        self.health = health

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a request may go to this upstream now."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        was_open = self.opened_at is not None
        self.consecutive = 0
        self.opened_at = None
        self._trial = False
        if was_open and self.health is not None:
            self.health.set("ready")

    def release(self) -> None:
        """A request let through ended without a verdict on the upstream's health (the request
        was refused as invalid, or its client left): free the half-open trial for the next one,
        so the circuit cannot stay stuck half-open."""
        self._trial = False

    def failure(self) -> None:
        self.consecutive += 1
        self._trial = False
        if self.opened_at is not None or self.consecutive >= self.threshold:
            self.opened_at = time.monotonic()
            if self.health is not None:
                self.health.set("down", f"{self.consecutive} consecutive failures; paused, next try in "
                                        f"{self.cooldown:g}s")

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (time.monotonic() - self.opened_at))
