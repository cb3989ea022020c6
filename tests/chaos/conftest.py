"""The chaos smoke: registers the ``chaos`` marker (a real fault-injection run; needs root)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault injection with real processes (root: iptables, mounts)"
    )
