"""A dependency's health: one log line per change, a reminder while it lasts, quiet flapping."""

from __future__ import annotations

import logging

import pytest

from thrifty.health import DEGRADED, DOWN, READY, Health, worst


def test_one_line_per_change_and_a_reminder_while_it_lasts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h = Health("thing", logging.getLogger("thrifty.test"), remind_every=0.0, min_interval=0.0)
    h.set(DEGRADED, "it broke")
    h.remind_every = 3600
    for _ in range(100):
        h.set(DEGRADED, "it broke")  # counted, not logged
    h.set(READY)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["thing: degraded (it broke)",
                     "thing: ready again after 0.0s degraded (100 changes or failures not logged before this)"]
    assert h.changes == 2


def test_a_reminder_counts_the_failures_it_did_not_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h = Health("thing", logging.getLogger("thrifty.test"), remind_every=0.0, min_interval=0.0)
    h.set(DOWN, "gone")
    h.set(DOWN, "still gone")
    assert "still down" in caplog.records[-1].getMessage() and "1 failures" in caplog.records[-1].getMessage()


def test_flapping_is_logged_at_most_once_per_interval_and_its_end_is_told(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h = Health("flappy", logging.getLogger("thrifty.test"), min_interval=3600)
    for _ in range(50):
        h.set(DEGRADED, "slow")
        h.set(READY)
    assert len(caplog.records) == 1 and h.state == READY and h.changes == 100
    h.min_interval = 0.0
    h.set(READY)  # the next healthy call says where it ended
    assert "ready (99 changes" in caplog.records[-1].getMessage()


def test_the_worst_state_wins() -> None:
    assert worst([READY, DEGRADED, READY]) == DEGRADED
    assert worst([DEGRADED, DOWN]) == DOWN
    assert worst([]) == READY


def test_an_upstream_breaker_logs_when_it_opens_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    from thrifty.providers.breaker import CircuitBreaker

    caplog.set_level(logging.INFO)
    breaker = CircuitBreaker(3, 30.0, Health("upstream m", logging.getLogger("thrifty.test")))
    for _ in range(10):
        breaker.failure()
    breaker.success()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("upstream m: down (3 consecutive failures")
    assert lines[1].startswith("upstream m: ready again")
