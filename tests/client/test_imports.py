"""kclient stands alone: it never imports kbroker, and kbctl --help loads no client code."""

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
