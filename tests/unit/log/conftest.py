from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.log.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "t-0"
