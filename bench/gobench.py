"""Build and run ``kbload``, the Go load client in ``bench/go`` (see its ``main.go``).

It is built offline with Debian's ``go`` (golang-go) against Debian's nats.go
(golang-github-nats-io-go-nats-dev under /usr/share/gocode): ``GOPATH=/usr/share/gocode``,
``GO111MODULE=off``, no module download. The binary is cached under ``bench/go/.build`` by a
hash of the sources, so only the first run of a changed client pays for the build (~2 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

__all__ = ["GO_DIR", "build", "kbload"]

GO_DIR: Final = Path(__file__).resolve().parent / "go"
_GOPATH: Final = "/usr/share/gocode"


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(GO_DIR.glob("*.go")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build() -> Path:
    """The path of a kbload binary built from the current sources (built if missing)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is not installed: run `bash scripts/bench-deps.sh`")
    out_dir = GO_DIR / ".build"
    binary = out_dir / f"kbload-{_source_hash()}"
    if binary.exists():
        return binary
    out_dir.mkdir(exist_ok=True)
    for stale in out_dir.glob("kbload-*"):
        stale.unlink()
    env = {
        **os.environ,
        "GOPATH": _GOPATH,
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out_dir / "cache"),
        "CGO_ENABLED": "0",
    }
    subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=GO_DIR,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    return binary


def kbload(subcommand: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run ``kbload SUBCOMMAND ARGS...`` (bounded by ``timeout`` seconds); its JSON output."""
    proc = subprocess.run(
        [str(build()), subcommand, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kbload {subcommand} failed: {proc.stderr.strip()[-2000:]}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc
