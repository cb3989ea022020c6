"""kclient stands alone: it never imports kbroker, and kbctl --help loads no client code; the
collector tuning (kclient.tuning) that kbctl applies."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import kclient
for module in pkgutil.walk_packages(kclient.__path__, "kclient."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
bad = sorted(m for m in sys.modules if m == "kbroker" or m.startswith("kbroker."))
assert not bad, bad
"""

HELP = """
import sys
from kclient.cli import build_parser
build_parser().format_help()
assert "aiohttp" not in sys.modules, "kbctl --help must stay fast"
"""


def test_kclient_never_imports_kbroker() -> None:
    subprocess.run([sys.executable, "-c", CHECK], check=True, timeout=60)


def test_kbctl_help_imports_no_client() -> None:
    subprocess.run([sys.executable, "-c", HELP], check=True, timeout=60)


TUNE = """
import gc
import kclient
from kclient.tuning import GC_THRESHOLD_YOUNG
before = gc.get_threshold()
kclient.tune_gc()
assert before[0] == 700, before
assert gc.get_threshold() == (GC_THRESHOLD_YOUNG, 20, 100), gc.get_threshold()
assert gc.get_freeze_count() > 0
"""


def test_tune_gc_freezes_and_raises_thresholds() -> None:
    # In a child: the collector's settings are process-wide.
    subprocess.run([sys.executable, "-c", TUNE], check=True, timeout=60)


KBCTL_TUNES = """
import gc
from kclient.cli import main
from kclient.tuning import GC_THRESHOLD_YOUNG
assert gc.get_threshold()[0] == 700
code = main(["--bootstrap", "http://127.0.0.1:9", "--timeout", "1", "cluster"])
assert code != 0, code  # nothing listens on port 9
assert gc.get_threshold()[0] == GC_THRESHOLD_YOUNG, gc.get_threshold()
"""


def test_kbctl_tunes_the_collector() -> None:
    subprocess.run([sys.executable, "-c", KBCTL_TUNES], check=True, timeout=60)
