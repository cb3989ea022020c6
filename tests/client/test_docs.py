"""The examples of docs/client.md and docs/cli.md run as written against a real broker.

``python`` blocks of client.md run in order in one namespace, with the documented URL
replaced by the test broker's. ``console`` blocks of cli.md: every ``$`` line runs in bash with
``KBROKER_URL`` set; it must exit 0 (or the ``# exit N`` it states), and the output lines shown
must appear in order, ``...`` matching anything (a line of only ``...`` any number of lines).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_URL = "http://127.0.0.1:8080"


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.S | re.M)


def test_client_examples_run(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "docs_client"}
    examples = blocks(ROOT / "docs" / "client.md", "python")
    assert len(examples) >= 8
    for number, source in enumerate(examples, 1):
        code = compile(source.replace(DOC_URL, url), f"docs/client.md#example{number}", "exec")
        exec(code, namespace)
    printed = capsys.readouterr().out
    assert "101" in printed.splitlines()  # the group consumer saw every order
    assert "40904 409 False" in printed


def _pattern(line: str) -> re.Pattern[str]:
    parts = [re.escape(" ".join(p.split())) for p in " ".join(line.split()).split("...")]
    return re.compile(".*".join(parts))


def _sessions(path: Path) -> list[tuple[str, int, list[str]]]:
    """(command, expected exit code, expected output lines) in document order."""
    out: list[tuple[str, int, list[str]]] = []
    for block in blocks(path, "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                command = line[2:]
                wanted = 0
                found = re.search(r"#\s*exit (\d+)\s*$", command)
                if found:
                    wanted = int(found.group(1))
                    command = command[: found.start()].rstrip()
                out.append((command, wanted, []))
            elif out:
                out[-1][2].append(line)
    return out


def check_output(command: str, expected: list[str], actual: str) -> None:
    lines = [" ".join(line.split()) for line in actual.splitlines() if line.strip()]
    position = 0
    for want in expected:
        if not want.strip() or want.strip() == "...":
            continue
        pattern = _pattern(want)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        assert position < len(lines), f"{command!r}: no line matching {want!r} in:\n{actual}"
        position += 1


def test_cli_examples_run(url: str) -> None:
    env = {**os.environ, "KBROKER_URL": url, "NO_COLOR": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    sessions = _sessions(ROOT / "docs" / "cli.md")
    assert len(sessions) >= 15
    for command, wanted, expected in sessions:
        done = subprocess.run(
            ["bash", "-c", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == wanted, f"{command!r} exited {done.returncode}:\n{output}"
        check_output(command, expected, output)
