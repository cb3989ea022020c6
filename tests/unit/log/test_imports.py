"""Every log module imports on its own, in a fresh interpreter (no import-order accidents)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "kbroker.log",
    "kbroker.log._fileio",
    "kbroker.log.batch",
    "kbroker.log.checkpoint",
    "kbroker.log.epoch_cache",
    "kbroker.log.flusher",
    "kbroker.log.index",
    "kbroker.log.manager",
    "kbroker.log.partition_log",
    "kbroker.log.segment",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    forbidden = "aiohttp", "kazoo"
    code = (
        f"import sys, {module}\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {forbidden!r}]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
