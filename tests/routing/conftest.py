"""Shared fixtures: the real routing data in ../shared/data/routing (read, never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest


def find_data() -> Path | None:
    """`shared/data/routing` beside the project root or beside one of its parents."""
    for parent in Path(__file__).resolve().parents[2:]:
        candidate = parent / "shared" / "data" / "routing"
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def routing_data() -> Path:
    found = find_data()
    if found is None:
        pytest.skip("the shared routing data (../shared/data/routing) is not here")
    return found
