from __future__ import annotations

import pytest

from .helpers import Recorder


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
