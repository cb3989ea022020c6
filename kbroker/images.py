"""Docker images for kbroker, built on this machine without any container registry.

``python -m kbroker.images build|status|clean`` (``make images`` runs ``build``).

Three images, each built FROM the one before it:

``kbroker-base:bookworm``
    A Debian 12 root file system made by ``debootstrap --variant=minbase`` with the few
    packages every image needs (python3 and venv, tini, socat, netcat), imported with
    ``docker import``. No registry is involved at all.
``kbroker-zookeeper:3.8``
    The base plus Debian's ``zookeeper`` package and a headless JRE (``compose/zookeeper``).
``kbroker:<version>``
    The base plus a venv ``/opt/kbroker`` made with the base's python3 (Debian 12's is 3.11),
    into which the wheels built on the host (kbroker and its dependencies, at the versions
    installed in this venv) are installed with ``pip --no-index`` (``compose/kbroker``).

Cache invariant: every image carries the label ``org.kbroker.inputs``, a hash of everything it
is made from (the debootstrap arguments; the Dockerfile and files beside it; the content of
the wheel set; the parent image's id). ``build`` skips an image whose tag exists with the same
label, and rebuilds it (and so its children, whose parent id changed) otherwise. The hash of a
wheel covers the names and bytes of its members, not the zip file, whose timestamps change at
every ``pip wheel``. The kbroker image also carries ``org.kbroker.sources``, a hash of what the
wheels are made from (package sources, project files, ``pip freeze``): when it matches, not even
the wheels are built, so a cached ``build`` takes about a second.

Needs: a Docker engine (``scripts/docker-engine.sh`` is run when none answers) and, only when
the base image must be made, ``debootstrap`` (installed with apt-get when missing). Root or
sudo for debootstrap and apt-get. Not thread-safe and not meant to run twice at once on one
machine: the tags are global to the engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from kbroker import __version__

__all__ = [
    "BASE_IMAGE",
    "KBROKER_IMAGE",
    "ZOOKEEPER_IMAGE",
    "ImageError",
    "docker_answers",
    "ensure_images",
    "main",
]

REPO: Final = Path(__file__).resolve().parent.parent
COMPOSE_DIR: Final = REPO / "compose"
CACHE_DIR: Final = REPO / ".images"
LABEL: Final = "org.kbroker.inputs"
SOURCES_LABEL: Final = "org.kbroker.sources"
PACKAGES: Final = ("kbroker", "kclient")
"""The packages in kbroker's wheel (setup.cfg's packages.find)."""
PROJECT_FILES: Final = ("setup.cfg", "pyproject.toml", "README.md")

BASE_IMAGE: Final = "kbroker-base:bookworm"
ZOOKEEPER_IMAGE: Final = "kbroker-zookeeper:3.8"
KBROKER_IMAGE: Final = f"kbroker:{__version__}"

SUITE: Final = "bookworm"
MIRROR: Final = "http://deb.debian.org/debian"
BASE_PACKAGES: Final = (
    "python3",
    "python3-venv",
    "tini",
    "socat",
    "netcat-openbsd",
)
_FORMAT: Final = "1"
"""Bump to force every image to be rebuilt after a change this module cannot see."""


class ImageError(RuntimeError):
    """An image could not be built (the message says what to do)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageState:
    """What the engine has under one tag: its id and inputs label, or nothing."""

    tag: str
    image_id: str | None
    inputs: str | None
    sources: str | None
    size_mb: float | None


# --------------------------------------------------------------------------------- commands


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | None = None,
) -> None:
    """Run a command quietly; on failure raise ImageError with the tail of its output."""
    result = subprocess.run(
        list(argv),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        tail = result.stdout.decode(errors="replace")[-4000:]
        raise ImageError(f"{' '.join(argv)} failed ({result.returncode}):\n{tail}")


def _root_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def docker_answers() -> bool:
    """True when the docker CLI is installed and an engine answers within 10 s."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def ensure_engine() -> None:
    """Start (installing if needed) a Docker engine when none answers, or raise ImageError."""
    if docker_answers():
        return
    script = REPO / "scripts" / "docker-engine.sh"
    result = subprocess.run(["bash", str(script)], check=False)
    if result.returncode != 0 or not docker_answers():
        raise ImageError(
            "no Docker engine answers and scripts/docker-engine.sh could not start one"
        )


def inspect(tag: str) -> ImageState:
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=30
    )
    if result.returncode != 0:
        return ImageState(tag=tag, image_id=None, inputs=None, sources=None, size_mb=None)
    info = json.loads(result.stdout)[0]
    labels = (info.get("Config") or {}).get("Labels") or {}
    return ImageState(
        tag=tag,
        image_id=str(info["Id"]),
        inputs=labels.get(LABEL),
        sources=labels.get(SOURCES_LABEL),
        size_mb=round(int(info.get("Size", 0)) / 1e6, 1),
    )


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def _tree_digest(directory: Path) -> str:
    """Hash of the relative names, modes and bytes of every file under ``directory``."""
    parts: list[bytes | str] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        parts += [str(path.relative_to(directory)), oct(path.stat().st_mode & 0o777)]
        parts.append(path.read_bytes())
    return _digest(*parts)


def wheel_set_digest(wheel_dir: Path) -> str:
    """Hash of the wheels' contents (member names and bytes), independent of zip timestamps."""
    parts: list[bytes | str] = []
    for wheel in sorted(wheel_dir.glob("*.whl")):
        parts.append(wheel.name)
        with zipfile.ZipFile(wheel) as archive:
            for member in sorted(archive.namelist()):
                parts += [member, archive.read(member)]
    return _digest(*parts)


# ------------------------------------------------------------------------------- the images


def base_inputs() -> str:
    return _digest(_FORMAT, SUITE, MIRROR, "minbase", *BASE_PACKAGES)


def build_base(force: bool = False) -> bool:
    """Make ``kbroker-base`` with debootstrap and docker import; False when cached."""
    inputs = base_inputs()
    if not force and inspect(BASE_IMAGE).inputs == inputs:
        return False
    if shutil.which("debootstrap") is None:
        print("images: installing debootstrap", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run([*_root_prefix(), "apt-get", "update", "-q"], env=env)
        _run([*_root_prefix(), "apt-get", "install", "-y", "-q", "debootstrap"], env=env)
    CACHE_DIR.mkdir(exist_ok=True)
    debs = CACHE_DIR / "debs"
    debs.mkdir(exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE_DIR))
    try:
        print(f"images: debootstrap {SUITE} (minbase) -> {BASE_IMAGE}", flush=True)
        _run(
            [
                *_root_prefix(),
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                f"--cache-dir={debs}",
                SUITE,
                str(rootfs),
                MIRROR,
            ]
        )
        _slim_rootfs(rootfs)
        _import_rootfs(rootfs, inputs)
    finally:
        _run([*_root_prefix(), "rm", "-rf", "--one-file-system", str(rootfs)])
    return True


def _slim_rootfs(rootfs: Path) -> None:
    """Drop package caches and lists (apt-get update refreshes lists when a child needs them)."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*.log"):
        _run([*_root_prefix(), "sh", "-c", f"rm -rf {rootfs}/{pattern}"])


def _import_rootfs(rootfs: Path, inputs: str) -> None:
    tar = subprocess.Popen(
        [*_root_prefix(), "tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
    )
    changes = [
        f"LABEL {LABEL}={inputs}",
        "ENV LANG=C.UTF-8",
        "ENV DEBIAN_FRONTEND=noninteractive",
        'CMD ["/bin/bash"]',
    ]
    argv = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    try:
        _run([*argv, "-", BASE_IMAGE], stdin=tar.stdout)
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        if tar.wait(timeout=300) != 0:
            raise ImageError("tar of the debootstrap root file system failed")


def _docker_build(
    tag: str, context: Path, inputs: str, parent: str, labels: Mapping[str, str] | None = None
) -> None:
    argv = ["docker", "build"]
    for name, value in {LABEL: inputs, **(labels or {})}.items():
        argv += ["--label", f"{name}={value}"]
    argv += [
        "--build-arg",
        f"BASE_IMAGE={parent}",
        "-t",
        tag,
        str(context),
    ]
    # The legacy builder: BuildKit needs the buildx plugin, which this machine may not have.
    _run(argv, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    # The build stage and the image the tag pointed at before are left untagged: drop them
    # (prune never removes an image a container still uses).
    _run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL}"])


def build_zookeeper(force: bool = False) -> bool:
    """Build ``kbroker-zookeeper`` from compose/zookeeper; False when cached."""
    parent = inspect(BASE_IMAGE).image_id
    if parent is None:
        raise ImageError(f"{BASE_IMAGE} is missing: build it first")
    context = COMPOSE_DIR / "zookeeper"
    inputs = _digest(_FORMAT, parent, _tree_digest(context))
    if not force and inspect(ZOOKEEPER_IMAGE).inputs == inputs:
        return False
    print(f"images: docker build {ZOOKEEPER_IMAGE} (Debian's zookeeper package)", flush=True)
    _docker_build(ZOOKEEPER_IMAGE, context, inputs, BASE_IMAGE)
    return True


def build_wheels(wheel_dir: Path, freeze: str) -> None:
    """kbroker's wheel and its dependencies' wheels, pinned by ``freeze`` (this venv's
    installed versions, so the image runs what the tests here run)."""
    constraints = wheel_dir / "constraints.txt"
    constraints.write_text(freeze)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "-c", str(constraints), "-w", str(wheel_dir), str(REPO)])
    constraints.unlink()


def _pip_freeze() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def sources_digest(parent: str, freeze: str) -> str:
    """Hash of what kbroker's wheel set is made from: the packages' .py and py.typed files,
    the project files, the pinned dependencies, the recipe and the parent image.

    A shortcut only: when it matches the image's label no wheel is built at all; when it does
    not, the wheels are built and their content hash decides (a source change that leaves the
    wheels identical does not rebuild the image).
    """
    parts: list[bytes | str] = [_FORMAT, parent, freeze, _tree_digest(COMPOSE_DIR / "kbroker")]
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if path.suffix in (".py", ".typed") and "__pycache__" not in path.parts:
                parts += [str(path.relative_to(REPO)), path.read_bytes()]
    for name in PROJECT_FILES:
        path = REPO / name
        parts += [name, path.read_bytes() if path.exists() else b""]
    return _digest(*parts)


def build_kbroker(force: bool = False) -> bool:
    """Build ``kbroker:<version>`` from compose/kbroker and host-built wheels; False if cached."""
    parent = inspect(BASE_IMAGE).image_id
    if parent is None:
        raise ImageError(f"{BASE_IMAGE} is missing: build it first")
    freeze = _pip_freeze()
    sources = sources_digest(parent, freeze)
    current = inspect(KBROKER_IMAGE)
    if not force and current.sources == sources:
        return False
    CACHE_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kbroker-image-", dir=CACHE_DIR) as tmp:
        context = Path(tmp)
        shutil.copytree(COMPOSE_DIR / "kbroker", context, dirs_exist_ok=True)
        wheel_dir = context / "wheels"
        wheel_dir.mkdir()
        build_wheels(wheel_dir, freeze)
        recipe = _tree_digest(COMPOSE_DIR / "kbroker")
        inputs = _digest(_FORMAT, parent, recipe, wheel_set_digest(wheel_dir))
        if not force and current.inputs == inputs:
            return False
        print(f"images: docker build {KBROKER_IMAGE} (wheels built on the host)", flush=True)
        _docker_build(KBROKER_IMAGE, context, inputs, BASE_IMAGE, {SOURCES_LABEL: sources})
    return True


def ensure_images(force: bool = False) -> dict[str, float]:
    """Build whatever image is missing or outdated; returns seconds spent per image.

    Cheap when everything is cached (a ``pip freeze``, a hash of the sources, and a few
    ``docker image inspect``: about a second).
    """
    ensure_engine()
    timings: dict[str, float] = {}
    for tag, step in (
        (BASE_IMAGE, build_base),
        (ZOOKEEPER_IMAGE, build_zookeeper),
        (KBROKER_IMAGE, build_kbroker),
    ):
        start = time.monotonic()
        built = step(force)
        timings[tag] = time.monotonic() - start
        print(
            f"images: {tag} {'built' if built else 'up to date'} ({timings[tag]:.1f} s)",
            flush=True,
        )
    return timings


def status() -> int:
    """Print each image's state; 0 when all exist (they may still be outdated)."""
    if not docker_answers():
        print("images: no Docker engine answers (bash scripts/docker-engine.sh starts one)")
        return 1
    missing = 0
    for tag in (BASE_IMAGE, ZOOKEEPER_IMAGE, KBROKER_IMAGE):
        state = inspect(tag)
        if state.image_id is None:
            missing += 1
            print(f"{tag}: missing")
        else:
            print(f"{tag}: {state.image_id[7:19]} {state.size_mb} MB inputs={state.inputs}")
    return 1 if missing else 0


def clean() -> None:
    """Remove the three images and the local cache directory (.images/)."""
    if docker_answers():
        for tag in (KBROKER_IMAGE, ZOOKEEPER_IMAGE, BASE_IMAGE):
            subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
    if CACHE_DIR.exists():
        _run([*_root_prefix(), "rm", "-rf", "--one-file-system", str(CACHE_DIR)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kbroker.images", description=__doc__)
    parser.add_argument("command", choices=["build", "status", "clean"])
    parser.add_argument("--force", action="store_true", help="build: rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            total = sum(ensure_images(args.force).values())
            print(f"images: done in {total:.1f} s")
            return 0
        if args.command == "status":
            return status()
        clean()
        return 0
    except ImageError as exc:
        print(f"images: ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
