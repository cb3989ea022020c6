"""Report a run: the terminal table, ratios against peers, the floors, JSON, Markdown, charts.

Ratios are taken between rows measured in the same run (medians of their repetitions); the
paired ratios of alternating repetitions are kept in the JSON too. The floors are issue 7's
done-when figures; a floor whose rows are missing (skipped, failed, or not in this suite) is
"not measured", never "met".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.model import Row, Sample, Settled

__all__ = [
    "FLOORS",
    "RATIOS",
    "Floor",
    "charts",
    "evaluate",
    "markdown",
    "print_table",
    "write_json",
]

_HEAD_RF1: Final = "produce/kbroker-rf1/r1000-c64"
_HEAD_RF3: Final = "produce/kbroker-rf3/r1000-c64"

RATIOS: Final = [
    ("kbroker RF1 acks=1 / Redis XADD -P 1000 (r1000 c64)", _HEAD_RF1, "produce/redis/r1000-c64"),
    (
        "kbroker RF1 acks=1 / bare aiohttp limit (r1000 c64)",
        _HEAD_RF1,
        "produce/bare-aiohttp/r1000-c64",
    ),
    (
        "kbroker RF1 acks=1 / NATS R1 async publish (r1000 c64)",
        _HEAD_RF1,
        "produce/nats-r1/r1000-c64",
    ),
    (
        "kbroker RF1 / Redis, 1 connection (r1000 c1)",
        "produce/kbroker-rf1/r1000-c1",
        "produce/redis/r1000-c1",
    ),
    (
        "kbroker RF1 / Redis, single record (r1 c64)",
        "produce/kbroker-rf1/r1-c64",
        "produce/redis/r1-c64",
    ),
    (
        "kbroker RF3 acks=all / NATS R3 async publish (r1000 c64)",
        _HEAD_RF3,
        "produce/nats-r3/r1000-c64",
    ),
    ("kbroker RF3 acks=all / kbroker RF1 acks=1 (r1000 c64)", _HEAD_RF3, _HEAD_RF1),
    (
        "kbroker RF1 fsync 1 s / Redis AOF everysec (r1000 c64)",
        "produce/kbroker-rf1-fsync1s/r1000-c64",
        "produce/redis/r1000-c64",
    ),
    (
        "stateless fetch / Redis XREADGROUP COUNT 1000",
        "fetch/kbroker-rf1/stateless",
        "fetch/redis/xreadgroup",
    ),
    ("stateless fetch / NATS pull fetch 1000", "fetch/kbroker-rf1/stateless", "fetch/nats-r1/pull"),
    (
        "kbroker num.http.workers=2 / 0, produce (r1000 c64)",
        "produce/kbroker-rf1-workers2/r1000-c64",
        "produce/kbroker-rf1-workers0/r1000-c64",
    ),
    (
        "kbroker num.http.workers=2 / 0, stateless fetch",
        "fetch/kbroker-rf1-workers2/stateless",
        "fetch/kbroker-rf1-workers0/stateless",
    ),
    (
        "Python: aiohttp->kbroker / redis-py XADD",
        "produce/kbroker-python/r1000-c4",
        "produce/redis-python/r1000-c4",
    ),
    (
        "Python: aiohttp->kbroker / nats-py publish",
        "produce/kbroker-python/r1000-c4",
        "produce/nats-python/r1000-c4",
    ),
    (
        "produce into a 10 GB topic / a 100 MB topic, same broker, alternated",
        "scale/retained-10g",
        "scale/retained-100m",
    ),
]


@dataclass(frozen=True, slots=True)
class Floor:
    """One done-when figure: ``value(rows)`` compared with ``target`` (``at_most``: lower is
    better)."""

    name: str
    value: Callable[[dict[str, Row]], float | None]
    target: float
    at_most: bool = False
    unit: str = "x"

    def check(self, rows: dict[str, Row]) -> dict[str, Any]:
        """The floor's value in ``rows`` and whether it is met (None: not measured)."""
        value = self.value(rows)
        met = (
            None
            if value is None
            else (value <= self.target if self.at_most else value >= self.target)
        )
        return {
            "floor": self.name,
            "value": None if value is None else round(value, 3),
            "target": self.target,
            "unit": self.unit,
            "met": met,
        }


def _rate(rows: dict[str, Row], key: str) -> float | None:
    row = rows.get(key)
    if row is None or row.skipped or not row.samples:
        return None
    return row.records_per_second


def ratio(rows: dict[str, Row], num: str, den: str) -> float | None:
    """``num``'s median rate over ``den``'s, or None if either is missing."""
    a, b = _rate(rows, num), _rate(rows, den)
    return None if a is None or not b else a / b


def paired(rows: dict[str, Row], num: str, den: str) -> list[float]:
    """Ratios of the repetitions taken side by side (alternating), in order."""
    a, b = rows.get(num), rows.get(den)
    if a is None or b is None:
        return []
    return [
        round(x.records_per_second / y.records_per_second, 3)
        for x, y in zip(a.samples, b.samples, strict=False)
        if y.records_per_second
    ]


def _extra(key: str, *path: str) -> Callable[[dict[str, Row]], float | None]:
    def get(rows: dict[str, Row]) -> float | None:
        row = rows.get(key)
        if row is None or row.skipped:
            return None
        node: Any = row.extra
        for name in path:
            if not isinstance(node, dict) or name not in node:
                return None
            node = node[name]
        return float(node) if node is not None else None

    return get


FLOORS: Final = [
    Floor(
        "RF1 acks=1 batched produce >= 2.0x Redis XADD -P 1000 (redis-benchmark)",
        lambda r: ratio(r, _HEAD_RF1, "produce/redis/r1000-c64"),
        2.0,
    ),
    Floor(
        "RF1 acks=1 batched produce >= 70% of the bare aiohttp limit",
        lambda r: ratio(r, _HEAD_RF1, "produce/bare-aiohttp/r1000-c64"),
        0.70,
    ),
    Floor(
        "RF3 acks=all batched produce >= 2.0x NATS JetStream R3 async publish (Go)",
        lambda r: ratio(r, _HEAD_RF3, "produce/nats-r3/r1000-c64"),
        2.0,
    ),
    Floor(
        "RF3 acks=all batched produce >= 400k records/s",
        lambda r: _rate(r, _HEAD_RF3),
        400_000,
        unit="records/s",
    ),
    Floor(
        "stateless fetch >= 2.0x Redis XREADGROUP COUNT 1000 (redis-benchmark)",
        lambda r: ratio(r, "fetch/kbroker-rf1/stateless", "fetch/redis/xreadgroup"),
        2.0,
    ),
    Floor(
        "p99 end-to-end latency at 20k records/s, RF3 acks=all <= 10 ms",
        _extra("latency/kbroker-rf3", "e2e", "p99_ms"),
        10.0,
        at_most=True,
        unit="ms",
    ),
    Floor(
        "produce throughput with 10 GB retained within 10% of 100 MB",
        lambda r: ratio(r, "scale/retained-10g", "scale/retained-100m"),
        0.90,
    ),
    Floor(
        "recovery after kill -9 of a broker holding 10 GB < 10 s",
        _extra("scale/recovery", "seconds_at_10g"),
        10.0,
        at_most=True,
        unit="s",
    ),
    # The other issues' done-when figures that this suite measures.
    Floor(
        "broker core: RF1 acks=1 batched produce >= 500k records/s",
        lambda r: _rate(r, _HEAD_RF1),
        500_000,
        unit="records/s",
    ),
    Floor(
        "broker core: RF1 acks=1 batched produce >= 40% of the bare aiohttp limit",
        lambda r: ratio(r, _HEAD_RF1, "produce/bare-aiohttp/r1000-c64"),
        0.40,
    ),
    Floor(
        "broker core: stateless fetch (1 MiB per request) >= 1M records/s",
        lambda r: _rate(r, "fetch/kbroker-rf1/stateless-1mib"),
        1_000_000,
        unit="records/s",
    ),
    Floor(
        "broker core: raw batch fetch (kclient's) >= 1M records/s",
        lambda r: _rate(r, "fetch/kbroker-rf1/batches-1mib"),
        1_000_000,
        unit="records/s",
    ),
    Floor(
        "broker core: single-record produce at 64 connections >= 8k requests/s",
        lambda r: _rate(r, "produce/kbroker-rf1/r1-c64"),
        8_000,
        unit="requests/s",
    ),
    Floor(
        "cluster: RF3 acks=all batched produce >= 250k records/s",
        lambda r: _rate(r, _HEAD_RF3),
        250_000,
        unit="records/s",
    ),
    Floor(
        "cluster: p99 produce (ack) latency at 20k records/s, RF3 acks=all <= 25 ms",
        _extra("latency/kbroker-rf3", "ack", "p99_ms"),
        25.0,
        at_most=True,
        unit="ms",
    ),
    Floor(
        "groups: one coordinator >= 5k offset commits/s",
        lambda r: _rate(r, "groups/commits"),
        5_000,
        unit="commits/s",
    ),
    Floor(
        "kclient: kbctl perf produce (acks=1) >= 200k records/s",
        lambda r: _rate(r, "clients/kbctl-perf-produce"),
        200_000,
        unit="records/s",
    ),
    Floor(
        "kclient: kbctl perf consume >= 500k records/s",
        lambda r: _rate(r, "clients/kbctl-perf-consume"),
        500_000,
        unit="records/s",
    ),
]


def evaluate(rows: dict[str, Row]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ratios, floors) of a run."""
    ratios = []
    for name, num, den in RATIOS:
        value = ratio(rows, num, den)
        if value is not None:
            ratios.append(
                {
                    "ratio": name,
                    "value": round(value, 3),
                    "numerator": num,
                    "denominator": den,
                    "paired": paired(rows, num, den),
                }
            )
    return ratios, [floor.check(rows) for floor in FLOORS]


# -- terminal ------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(
    rows: dict[str, Row], ratios: list[dict[str, Any]], floors: list[dict[str, Any]]
) -> None:
    """The run's table, ratios and floors on stdout."""
    print()
    print(
        f"{'key':<44}{'client':<22}{'records/s':>13}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'reps':>5}{'err':>5}"
    )
    for row in rows.values():
        if not row.samples and row.note:
            print(f"{row.key:<44}{row.client:<22}  {row.note}")
            continue
        med = row.median_sample()
        if row.workload == "latency":
            e2e, ack = row.extra.get("e2e", {}), row.extra.get("ack", {})
            print(
                f"{row.key:<44}{row.client:<22}  ack p50/p99/p99.9 {ack.get('p50_ms')}/"
                f"{ack.get('p99_ms')}/{ack.get('p999_ms')} ms, e2e {e2e.get('p50_ms')}/"
                f"{e2e.get('p99_ms')}/{e2e.get('p999_ms')} ms"
            )
            continue
        if row.workload.startswith("scale"):
            print(f"{row.key:<44}{row.client:<22}  {json.dumps(row.extra)[:120]}")
            continue
        print(
            f"{row.key:<44}{row.client:<22}{_fmt(row.records_per_second):>13}"
            f"{row.mb_per_second:>9.1f}{_fmt(med.p50_ms if med else None, '.2f'):>9}"
            f"{_fmt(med.p99_ms if med else None, '.2f'):>9}{len(row.samples):>5}"
            f"{sum(s.errors for s in row.samples):>5}"
        )
    print()
    for r in ratios:
        print(f"{r['ratio']:<62}{r['value']:>8.2f}x   paired {r['paired']}")
    print()
    for f in floors:
        state = {True: "MET", False: "NOT MET", None: "not measured"}[f["met"]]
        print(f"{state:<14}{f['floor']:<72}{f['value']} (target {f['target']} {f['unit']})")


# -- files ---------------------------------------------------------------------------------------


def write_json(path: Path, meta: dict[str, Any], rows: dict[str, Row]) -> None:
    """The run's metadata, ratios, floors and rows as JSON."""
    ratios, floors = evaluate(rows)
    doc = {
        **meta,
        "ratios": ratios,
        "floors": floors,
        "results": [r.to_json() for r in rows.values()],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def markdown(rows: dict[str, Row]) -> str:
    """Tables of a run for docs/benchmarks.md."""
    ratios, floors = evaluate(rows)
    out = [
        "| workload | system | mode | client | records/req | conns | records/s | MB/s | p99 ms "
        "| reps |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        if row.workload not in ("produce", "fetch"):
            continue
        if not row.samples and row.note:
            out.append(
                f"| {row.workload} | {row.system} | {row.mode} | {row.client} | | | "
                f"{row.note} | | | |"
            )
            continue
        med = row.median_sample()
        client = row.client + (" (Python client)" if row.python_client else "")
        out.append(
            f"| {row.workload} | {row.system} | {row.mode} | {client} | "
            f"{row.records_per_request or ''} | {row.connections or ''} | "
            f"{row.records_per_second:,.0f} | {row.mb_per_second:.1f} | "
            f"{_fmt(med.p99_ms if med else None, '.1f')} | {len(row.samples)} |"
        )
    out += [
        "",
        "| latency at 20k records/s | ack p50 / p99 / p99.9 ms "
        "| end-to-end p50 / p99 / p99.9 ms | received |",
        "|---|---|---|---:|",
    ]
    for row in rows.values():
        if row.workload == "latency" and row.extra:
            a, e = row.extra["ack"], row.extra["e2e"]
            out.append(
                f"| {row.system} {row.mode} | {a['p50_ms']} / {a['p99_ms']} / {a['p999_ms']} | "
                f"{e['p50_ms']} / {e['p99_ms']} / {e['p999_ms']} | "
                f"{row.extra['records_received']:,} / {row.extra['records_sent']:,} |"
            )
    out += ["", "| ratio (same run, medians) | value | paired repetitions |", "|---|---:|---|"]
    out += [f"| {r['ratio']} | {r['value']:.2f}x | {r['paired']} |" for r in ratios]
    out += ["", "| floor | measured | target | met |", "|---|---:|---:|---|"]
    for f in floors:
        state = {True: "met", False: "**not met**", None: "not measured"}[f["met"]]
        value = (
            "-" if f["value"] is None else _fmt(f["value"], ",.0f" if f["value"] > 1000 else ".2f")
        )
        out.append(
            f"| {f['floor']} | {value} {f['unit']} | {f['target']:,} {f['unit']} | {state} |"
        )
    return "\n".join(out) + "\n"


# -- charts --------------------------------------------------------------------------------------

_COLORS: Final = {
    "kbroker": "#1f77b4",
    "redis": "#d62728",
    "nats": "#2ca02c",
    "bare-aiohttp": "#7f7f7f",
}
#: Darker / lighter shades of a system's colour by mode (replicated, fsync).
_MODE_COLORS: Final = {
    ("kbroker", "RF3"): "#6baed6",
    ("kbroker", "fsync"): "#08306b",
    ("nats", "R3"): "#98df8a",
}


def _color(row: Row) -> str:
    for (system, marker), color in _MODE_COLORS.items():
        if row.system == system and marker in row.mode:
            return color
    return _COLORS.get(row.system, "#9467bd")


def _label(row: Row) -> str:
    client = row.client.replace(" (C)", "")
    return f"{row.system} {row.mode}\n[{client}]"


def _bars(ax: Any, rows: Sequence[Row], title: str) -> None:
    rows = [r for r in rows if r.samples]
    values = [r.records_per_second / 1e3 for r in rows]
    ypos = list(range(len(rows)))
    bars = ax.barh(
        ypos,
        values,
        color=[_color(r) for r in rows],
        hatch=None,
    )
    for bar, row in zip(bars, rows, strict=True):
        if row.python_client:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    ax.set_yticks(ypos, [_label(r) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("thousand records/s (median)")
    ax.set_title(title, fontsize=10)
    for y, v in zip(ypos, values, strict=True):
        ax.text(v, y, f" {v:,.0f}k", va="center", fontsize=7)
    ax.margins(x=0.18)


def charts(rows: dict[str, Row], out_dir: Path, prefix: str) -> list[Path]:
    """PNG charts of a run into ``out_dir``; returns their paths."""
    import matplotlib  # noqa: PLC0415 - the bench extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    paths = []
    produce = [
        r
        for r in rows.values()
        if r.workload == "produce" and (r.key.endswith("/r1000-c64") or r.python_client)
    ]
    fetch = [r for r in rows.values() if r.workload == "fetch"]
    fig, axes = plt.subplots(
        2, 1, figsize=(9, 8.5), height_ratios=[len(produce) or 1, len(fetch) or 1]
    )
    _bars(
        axes[0],
        produce,
        "Produce, 1000 records of 100 B per request, 64 connections "
        "(hatched: Python client, 4 in flight)",
    )
    _bars(axes[1], fetch, "Fetch, 1000 records per request")
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}throughput.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    lat = [r for r in rows.values() if r.workload == "latency" and r.extra]
    if lat:
        paths.append(_latency_chart(plt, lat, out_dir / f"{prefix}latency.png"))
    matrix = [
        r for r in rows.values() if r.workload == "produce" and not r.python_client and r.samples
    ]
    shapes = sorted(
        {(r.records_per_request or 0, r.connections or 0) for r in matrix}, reverse=True
    )
    if len(shapes) > 2:
        paths.append(_matrix_chart(plt, matrix, shapes, out_dir / f"{prefix}matrix.png"))
    scale = [r for r in rows.values() if r.workload.startswith("scale") and r.extra.get("points")]
    if scale:
        side = [rows.get(f"scale/retained-{size}") for size in ("100m", "10g")]
        side_by_side = [r.records_per_second for r in side if r is not None and r.samples]
        paths.append(_scale_chart(plt, scale, out_dir / f"{prefix}scale.png", side_by_side))
    return paths


def _latency_chart(plt: Any, lat: list[Row], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    names = ["p50_ms", "p99_ms", "p999_ms"]
    width = 0.8 / len(lat)
    for ax, kind, title in (
        (axes[0], "ack", "produce acknowledged"),
        (axes[1], "e2e", "end to end (consumer has it)"),
    ):
        for i, row in enumerate(lat):
            values = [max(float(row.extra[kind][n]), 0.01) for n in names]
            xs = [j + i * width for j in range(len(names))]
            ax.bar(
                xs,
                values,
                width,
                label=f"{row.system} {row.mode}",
                color=_color(row),
            )
            for x, v in zip(xs, values, strict=True):
                ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], ["p50", "p99", "p99.9"])
        ax.set_yscale("log")
        ax.set_title(f"{title}, 20k records/s open loop", fontsize=10)
    axes[0].set_ylabel("ms (log scale)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _matrix_chart(plt: Any, matrix: list[Row], shapes: list[tuple[int, int]], path: Path) -> Path:
    systems: dict[str, dict[tuple[int, int], float]] = {}
    colors: dict[str, str] = {}
    for r in matrix:
        name = f"{r.system} {r.mode}"
        colors[name] = _color(r)
        systems.setdefault(name, {})[(r.records_per_request or 0, r.connections or 0)] = (
            r.records_per_second
        )
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(systems)
    for i, (name, points) in enumerate(systems.items()):
        xs = [j + i * width for j in range(len(shapes))]
        ax.bar(xs, [points.get(s, 0) for s in shapes], width, label=name, color=colors[name])
    ax.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(shapes))],
        [f"{r} rec/req\n{c} conn" for r, c in shapes],
    )
    ax.set_yscale("log")
    ax.set_ylabel("records/s (log scale)")
    ax.set_title("Produce throughput by request shape", fontsize=10)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _human(value: float, _pos: object = None) -> str:
    """1234567 -> 1.2M, 45000 -> 45k, 3.25 -> 3.25."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.3g}"


def _scale_chart(
    plt: Any, scale: list[Row], path: Path, side_by_side: list[float] | None = None
) -> Path:
    """One panel per curve. ``side_by_side``: the medians of the ~100 MB and ~10 GB topics
    measured alternately (the retained floor), drawn over the retained curve."""
    import textwrap  # noqa: PLC0415

    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    cols = min(len(scale), 3)
    rows_n = (len(scale) + cols - 1) // cols
    fig, grid = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.6 * rows_n), squeeze=False)
    axes = [ax for line in grid for ax in line]
    for ax in axes[len(scale) :]:
        ax.set_visible(False)
    for ax, row in zip(axes, scale, strict=False):
        pts = [p for p in row.extra["points"] if p.get("y") is not None]
        xs = [p["x"] for p in pts]
        ys = [p["y"] for p in pts]
        ax.plot(xs, ys, marker="o", color=_COLORS["kbroker"], label=row.extra.get("y_label"))
        loaded = [(p["x"], p["loaded"]) for p in pts if p.get("loaded") is not None]
        if loaded:
            ax.plot(*zip(*loaded, strict=True), marker="s", color="#ff7f0e", label="logs loaded")
            ax.legend(fontsize=7, loc="lower right")
        if row.extra.get("log_x"):
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(row.extra.get("x_label", ""))
        ax.set_ylabel(row.extra.get("y_label", ""))
        ax.yaxis.set_major_formatter(FuncFormatter(_human))
        ax.set_title("\n".join(textwrap.wrap(row.mode, 42)), fontsize=9)
        ax.set_ylim(bottom=0, top=max(ys, default=1) * 1.25)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(_human(y), (x, y), fontsize=7, textcoords="offset points", xytext=(0, 5))
        if row.key == "scale/retained" and side_by_side and len(side_by_side) == len(xs) == 2:
            ax.lines[0].set_label("single samples, minutes apart")
            ax.plot(xs, side_by_side, marker="D", linestyle="--", color="#2ca02c")
            ax.lines[-1].set_label("side by side, alternated (the floor)")
            for x, y in zip(xs, side_by_side, strict=True):
                ax.annotate(
                    _human(y), (x, y), fontsize=7, textcoords="offset points", xytext=(0, -11)
                )
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_rows(path: Path) -> dict[str, Row]:
    """The rows of a results JSON written by :func:`write_json`."""
    doc = json.loads(path.read_text())
    rows: dict[str, Row] = {}
    for r in doc["results"]:
        samples = []
        for rep in r["repetitions"]:
            fields = {k: v for k, v in rep.items() if k not in ("records_per_second", "settled")}
            settled = Settled(**rep["settled"]) if rep.get("settled") else None
            samples.append(Sample(**fields, settled=settled))
        rows[r["key"]] = Row(
            key=r["key"],
            workload=r["workload"],
            system=r["system"],
            mode=r["mode"],
            client=r["client"],
            python_client=r["python_client"],
            records_per_request=r["records_per_request"],
            connections=r["connections"],
            samples=samples,
            extra=r.get("extra", {}),
            skipped=r.get("skipped"),
            failures=r.get("failures", []),
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RESULTS.json [--docs]``: the table, Markdown and charts of a
    finished run again (``--docs``: charts into docs/img/ as bench-<suite>-<chart>.png)."""
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("results", type=Path)
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args(argv)
    rows = load_rows(args.results)
    ratios, floors = evaluate(rows)
    print_table(rows, ratios, floors)
    stem = args.results.with_suffix("")
    args.results.with_suffix(".md").write_text(markdown(rows))
    pngs = charts(rows, stem.parent, stem.name + "-")
    if args.docs:
        suite = json.loads(args.results.read_text())["suite"]
        out = Path(__file__).resolve().parent.parent / "docs" / "img"
        out.mkdir(parents=True, exist_ok=True)
        for png in pngs:
            shutil.copy(png, out / f"bench-{suite}-{png.name.rsplit('-', 1)[-1]}")
    print("charts: " + ", ".join(str(p) for p in pngs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
