"""Budget alerts: a webhook POST when a budget's settled use crosses 50 / 80 / 100%.

Each (budget, window, threshold) fires once: the first replica to insert its row into
`spend_alerts` delivers it, so replicas do not send duplicates. Delivery is retried with a
doubling backoff, and the row records the attempts, the time of delivery or the last error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from thrifty.spend.keys import KeyStore
from thrifty.spend.meters import NANO, Meter
from thrifty.spend.settings import AlertSettings

__all__ = ["Alerts"]

log = logging.getLogger(__name__)


class Alerts:
    def __init__(self, store: KeyStore, settings: AlertSettings) -> None:
        self.store = store
        self.settings = settings
        self._fired: set[tuple[str, float, float]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhook)

    def check(self, meter: Meter, settled: int, now: float) -> None:
        """Fire every threshold `settled` has reached in `meter`'s current window."""
        if not self.enabled or meter.window is None:
            return
        start = meter.window.start(now)
        for t in self.settings.thresholds:
            if settled < meter.limit * t:
                break
            mark = (meter.name, start, t)
            if mark in self._fired:
                continue
            self._fired.add(mark)
            payload = {
                "event": "budget_threshold", "scope": meter.scope, "window": meter.window.describe(),
                "window_start": start, "resets_at": meter.window.reset(now), "threshold": t,
                "budget_usd": meter.limit / NANO, "spent_usd": settled / NANO,
            }  # fmt: skip
            task = asyncio.get_running_loop().create_task(self._fire(meter.name, start, t, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fire(self, scope: str, start: float, threshold: float, payload: dict[str, Any]) -> None:
        if not await asyncio.to_thread(self.store.claim_alert, scope, start, threshold):
            return  # another replica (or an earlier run) fired it
        url = self.settings.webhook
        assert url is not None
        error: str | None = None
        attempts = 0
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempts in range(1, self.settings.attempts + 1):
                try:
                    async with session.post(url, json=payload) as resp:
                        if resp.status < 300:
                            error = None
                            break
                        error = f"HTTP {resp.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"{exc.__class__.__name__}: {exc}"
                if attempts < self.settings.attempts:
                    await asyncio.sleep(self.settings.retry_backoff * 2 ** (attempts - 1))
        if error is not None:
            log.warning("budget alert %s at %.0f%% was not delivered after %d attempts: %s",
                        scope, threshold * 100, attempts, error)
        await asyncio.to_thread(self.store.record_delivery, scope, start, threshold, attempts, error is None, error)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
