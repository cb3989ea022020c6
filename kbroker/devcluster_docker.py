"""Docker mode of ``make cluster-up``: the compose project in ``compose/``.

Not built yet: every entry point says so and points at local mode.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["down", "logs", "status", "up"]

_NOT_YET = "docker mode is not available yet; run with KBROKER_CLUSTER_MODE=local"


def up(base: Path) -> list[str]:
    raise SystemExit(_NOT_YET)


def down(base: Path) -> list[str]:
    raise SystemExit(_NOT_YET)


def status(base: Path) -> int:
    raise SystemExit(_NOT_YET)


def logs(base: Path) -> None:
    raise SystemExit(_NOT_YET)
