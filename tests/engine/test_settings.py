"""The engine's thread count: every core the process may use but one, unless configured."""

from __future__ import annotations

import os

import pytest

from thrifty.engine.settings import EngineSettings, default_threads


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_the_gateway_keeps_one_core(monkeypatch: pytest.MonkeyPatch, cores: int, threads: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_threads() == threads
    assert EngineSettings().threads() == threads
    assert EngineSettings(n_threads=2).threads() == 2  # a configured count wins
