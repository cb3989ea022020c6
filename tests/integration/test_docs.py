"""The curl examples of README.md and docs/api.md run as written against a real cluster.

Every ```bash block of a document that calls curl runs, in order, in one bash process (so
variables such as ``$CLUSTER`` carry over), with http://127.0.0.1:8081-8083 replaced by the test
cluster's brokers.
When a ```json block follows, the JSON documents the block printed must match it, where the
string "…" matches any value. README blocks have no expected output: none of their answers may
be an error. Every error code of kclient.protocol must be listed in docs/api.md.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kbroker.testing.brokers import LocalCluster
from kclient.protocol import ErrorCode

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WILDCARD = "…"
_BLOCK = re.compile(r"```(bash|json)\n(.*?)```", re.S)


def _blocks(path: Path) -> list[tuple[str, str | None]]:
    """(bash script, expected JSON text or None) pairs, in document order."""
    found = _BLOCK.findall(path.read_text())
    out: list[tuple[str, str | None]] = []
    for i, (kind, text) in enumerate(found):
        if kind != "bash" or "curl " not in text:
            continue  # e.g. the README's `make cluster-up` / `make test`
        expected = found[i + 1][1] if i + 1 < len(found) and found[i + 1][0] == "json" else None
        out.append((text, expected))
    return out


def _documents(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs, position = [], 0
    text = text.strip()
    while position < len(text):
        doc, end = decoder.raw_decode(text, position)
        docs.append(doc)
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return docs


def _matches(expected: Any, actual: Any) -> bool:
    if expected == WILDCARD:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


class _Shell:
    """One bash process running blocks one after another (state carries over). Its curl gives
    up after ``CURL_MAX_TIME_S`` (a ``.curlrc`` in a private HOME), and a block that prints no
    end marker within its timeout fails the test instead of hanging it."""

    CURL_MAX_TIME_S = 30

    def __init__(self, home: Path) -> None:
        (home / ".curlrc").write_text(f"max-time = {self.CURL_MAX_TIME_S}\n")
        self._proc = subprocess.Popen(
            ["bash"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(home)},
        )

    def run(self, script: str, timeout: float = 120) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        marker = b"__KBROKER_DOC_BLOCK_DONE__"
        self._proc.stdin.write(script.encode() + b"\necho; echo " + marker + b"\n")
        self._proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while marker not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"block did not finish in {timeout} s:\n{script}\n{out.decode()}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"bash exited during:\n{script}\n{out.decode()}"
                out += chunk
        return out[: out.index(marker)].decode()

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(10)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()


def _localise(text: str, cluster: LocalCluster) -> str:
    for i, url in enumerate(cluster.urls):
        text = text.replace(f"http://127.0.0.1:{8081 + i}", url)
    return text


def _run_document(cluster: LocalCluster, path: Path, home: Path) -> None:
    shell = _Shell(home)
    try:
        for script, expected in _blocks(path):
            output = shell.run(_localise(script, cluster))
            printed = _documents(output)
            if expected is None:
                for doc in printed:
                    assert not (isinstance(doc, dict) and doc.get("error_code")), (script, doc)
                continue
            wanted = _documents(_localise(expected, cluster))
            assert len(printed) == len(wanted), (script, output)
            for want, got in zip(wanted, printed, strict=True):
                assert _matches(want, got), f"{script}\nexpected {want}\ngot      {got}"
    finally:
        shell.close()


def _create_hello(cluster: LocalCluster) -> None:
    cluster.create_topic("hello", partitions=3, replication_factor=3)


def test_readme_examples_run(cluster: LocalCluster, tmp_path: Path) -> None:
    _create_hello(cluster)  # what `make cluster-up` creates
    _run_document(cluster, ROOT / "README.md", tmp_path)


def test_api_examples_run(cluster: LocalCluster, tmp_path: Path) -> None:
    _run_document(cluster, ROOT / "docs" / "api.md", tmp_path)


def test_every_error_code_is_documented() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [c for c in ErrorCode if f"| {int(c)} |" not in text]
    assert not missing, missing
