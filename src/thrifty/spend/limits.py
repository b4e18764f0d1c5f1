"""Budgets, rate limits and the windows they count over.

A budget is USD over a window: a calendar one (`hour`, `day`, `week`, `month`, in UTC,
resetting at the period's start) or a rolling one (`90s`, `1h`, `24h`, `30d`). A rolling
window is kept as 12 buckets, so a counter store needs only integer counters: the window's
use is the sum of the buckets that overlap it (up to one bucket more than the window, which
errs on the side of refusing). Rate limits count over fixed, epoch-aligned minutes.

Specs are pydantic models, so nonsense (a negative budget, a window of zero) is refused when a
key is created, with the field named.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BudgetSpec", "Limits", "Window", "parse_window"]

_CALENDAR = ("hour", "day", "week", "month")
_ROLLING = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ROLLING_BUCKETS = 12


@dataclass(frozen=True)
class Window:
    """A calendar period (`unit`) or a rolling span of `seconds`."""

    name: str
    unit: str | None = None
    seconds: float = 0.0

    @property
    def rolling(self) -> bool:
        return self.unit is None

    @property
    def bucket(self) -> float:
        return max(1.0, self.seconds / ROLLING_BUCKETS)

    def start(self, now: float) -> float:
        """When the counted span begins (for a rolling window, the oldest bucket's start)."""
        if self.rolling:
            current = math.floor(now / self.bucket)
            return (current - ROLLING_BUCKETS + 1) * self.bucket
        t = dt.datetime.fromtimestamp(now, dt.UTC)
        if self.unit == "hour":
            s = t.replace(minute=0, second=0, microsecond=0)
        elif self.unit == "day":
            s = t.replace(hour=0, minute=0, second=0, microsecond=0)
        elif self.unit == "week":
            s = (t - dt.timedelta(days=t.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            s = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return s.timestamp()

    def reset(self, now: float) -> float:
        """When room next frees: the next period's start, or the oldest rolling bucket's end."""
        if self.rolling:
            return (math.floor(now / self.bucket) + 1) * self.bucket
        start = dt.datetime.fromtimestamp(self.start(now), dt.UTC)
        if self.unit == "hour":
            return start.timestamp() + 3600
        if self.unit == "day":
            return start.timestamp() + 86400
        if self.unit == "week":
            return start.timestamp() + 7 * 86400
        days = calendar.monthrange(start.year, start.month)[1]
        return start.timestamp() + days * 86400

    def counter_keys(self, now: float) -> list[str]:
        """The counters whose sum is the window's use; the last is the one a charge goes to."""
        if self.rolling:
            current = math.floor(now / self.bucket)
            return [f"{self.name}:{i}" for i in range(current - ROLLING_BUCKETS + 1, current + 1)]
        return [f"{self.name}:{int(self.start(now))}"]

    def ttl(self, now: float) -> int:
        """Seconds a counter must outlive its last charge."""
        if self.rolling:
            return int(self.seconds + 2 * self.bucket) + 1
        return int(self.reset(now) - now) + 60

    def describe(self) -> str:
        return f"rolling {self.name}" if self.rolling else f"calendar {self.name} (UTC)"


def parse_window(text: str) -> Window:
    """`day` (calendar) or `24h` (rolling). Raises ValueError saying what is accepted."""
    text = text.strip().lower()
    if text in _CALENDAR:
        return Window(name=text, unit=text)
    m = _ROLLING.match(text)
    if m is None:
        raise ValueError(f"window {text!r}: use {', '.join(_CALENDAR)} (calendar, UTC) or a rolling span such as 90s, 1h, 30d")
    seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"window {text!r} is zero long")
    if seconds > 366 * 86400:
        raise ValueError(f"window {text!r} is longer than a year")
    return Window(name=text, unit=None, seconds=seconds)


class BudgetSpec(BaseModel):
    """USD over one window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd: Decimal = Field(gt=0, le=Decimal(10) ** 7)
    window: str = "month"

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        return parse_window(v).name

    @property
    def parsed(self) -> Window:
        return parse_window(self.window)


class Limits(BaseModel):
    """Rate limits: requests and tokens (input + output) per minute, and requests at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, gt=0)

    @property
    def empty(self) -> bool:
        return self.rpm is None and self.tpm is None and self.concurrency is None
