"""Write docs/configuration.md from the settings tables in kbroker/config.py.

``python scripts/gen_config_docs.py`` rewrites the file; tests/unit/test_config_docs.py fails
when the file and the tables disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kbroker.config import BROKER_SETTINGS, LONG_MAX, TOPIC_SETTINGS  # noqa: E402

TARGET = ROOT / "docs" / "configuration.md"


def _value(value: object) -> str:
    if value is None:
        return "(none)"
    if value == LONG_MAX:
        return "unlimited"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def render() -> str:
    out = [
        "# Configuration",
        "",
        "Generated from `kbroker/config.py` by `python scripts/gen_config_docs.py`; a test keeps",
        "the two in step.",
        "",
        "## Broker settings",
        "",
        "Set each one (lowest precedence first) in the TOML file given with `--config`, as a",
        "`KBROKER_*` environment variable (the name upper-cased, dots as underscores), or on the",
        "command line (the flag where there is one, otherwise `--set name=value`).",
        "",
        "| setting | flag / environment | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in BROKER_SETTINGS:
        names = " ".join(f"`{n}`" for n in ((f"--{s.flag}",) if s.flag else ()) + s.env_names)
        default = "**required**" if s.required else _value(s.default)
        out.append(f"| `{s.name}` | {names} | {default} | {s.doc} |")
    out += [
        "",
        "## Topic settings",
        "",
        "Per topic, at creation (`configs` of `POST /v3/clusters/{c}/topics`) or later",
        "(`/v3/clusters/{c}/topics/{t}/configs`). Without an override a topic takes the broker",
        "setting named in the second column.",
        "",
        "| setting | default from | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for t in TOPIC_SETTINGS:
        source = f"`{t.broker_default}`" if t.broker_default else "-"
        default = _value(t.default) if t.broker_default is None else "(broker)"
        out.append(f"| `{t.name}` | {source} | {default} | {t.doc} |")
    out += [
        "",
        "## Example TOML file",
        "",
        "```toml",
        "broker.id = 1",
        'zookeeper.connect = "zk1:2181,zk2:2181,zk3:2181/kbroker"',
        'listen = "0.0.0.0:8080"',
        'advertised.url = "http://broker1.example.internal:8080"',
        'rack = "eu-west-1a"',
        'data.dir = "/var/lib/kbroker"',
        "default.replication.factor = 3",
        "min.insync.replicas = 2",
        "```",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
