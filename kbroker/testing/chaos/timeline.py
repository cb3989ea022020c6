"""The timeline of a chaos run as a PNG: availability per partition over time, faults marked.

Top: one lane per fault kind, a bar per fault from injection to the end of its heal, labelled
with its target. Bottom: one row per partition of the chaos topic plus one for the consumer
group's commits; time runs left to right in bins of ``bin_s`` seconds. A bin is green when a
write (or commit) was acknowledged in it, red when only failing requests were in flight,
orange when a request was waiting for an answer that came later (acks=all waiting for the ISR
to shrink, say), white when nothing was attempted. A vertical line in the fault's colour marks
each injection.

matplotlib is imported lazily (the ``chaos`` extra: ``pip install -e '.[chaos]'``), with the
non-interactive Agg backend; drawing is pure: histories in, one file out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbroker.testing.chaos.clients import Attempt, CommitEvent
from kbroker.testing.chaos.nemesis import KINDS, FaultRecord

__all__ = ["draw_timeline"]

_OK, _FAILED, _WAITING, _IDLE = 3, 2, 1, 0


def _bins(
    events: Sequence[tuple[float, float, bool]], t0: float, count: int, bin_s: float
) -> list[int]:
    """Per bin, the best of: OK (a request that ended in it succeeded), FAILED (a request
    that failed was in flight), WAITING (a request that later succeeded was in flight), IDLE."""
    row = [_IDLE] * count
    for started, ended, ok in events:
        first = max(0, int((started - t0) / bin_s))
        last = min(count - 1, int((ended - t0) / bin_s))
        during = _WAITING if ok else _FAILED
        for index in range(first, last):
            row[index] = max(row[index], during)
        if last >= 0:
            row[last] = max(row[last], _OK if ok else _FAILED)
    return row


def draw_timeline(
    path: Path,
    *,
    attempts: Sequence[Attempt],
    commits: Sequence[CommitEvent],
    faults: Sequence[FaultRecord],
    partitions: int,
    t0: float,
    end: float,
    title: str,
    crashes: Sequence[float] = (),
    bin_s: float = 1.0,
) -> None:
    """Write the PNG (see the module docstring); times are monotonic, ``t0`` is the origin."""
    import matplotlib  # noqa: PLC0415 - optional dependency, loaded when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.colors import ListedColormap  # noqa: PLC0415

    count = max(1, int((end - t0) / bin_s) + 1)
    rows = [
        _bins([(a.started, a.ended, a.ok) for a in attempts if a.partition == p], t0, count, bin_s)
        for p in range(partitions)
    ]
    commit_events = [(c.started, c.ended, c.status == "ok") for c in commits if c.kind == "commit"]
    rows.append(_bins(commit_events, t0, count, bin_s))
    labels = [f"p{p} writes" for p in range(partitions)] + ["group commits"]
    kinds = sorted({f.kind for f in faults})
    width = max(10.0, min(48.0, count / 10))
    fig, (lanes, ax) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(width, 1.6 + 0.35 * (len(rows) + len(kinds))),
        gridspec_kw={"height_ratios": [max(1, len(kinds)), len(rows)]},
    )
    palette = plt.get_cmap("tab10")
    colours = {kind: palette(i % 10) for i, kind in enumerate(KINDS)}
    _draw_lanes(lanes, faults=faults, kinds=kinds, t0=t0, end=end, colours=colours)
    ax.imshow(
        rows,
        aspect="auto",
        cmap=ListedColormap(["#ffffff", "#fdd49e", "#d62728", "#2ca02c"]),
        vmin=0,
        vmax=3,
        interpolation="nearest",
        extent=(0.0, count * bin_s, len(rows) - 0.5, -0.5),
    )
    for fault in faults:
        ax.axvline(fault.started - t0, color=colours[fault.kind], linewidth=0.8, alpha=0.9)
    for crash in crashes:
        ax.axvline(crash - t0, color="black", linewidth=1.5, linestyle="--")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel(
        "seconds since the workload started (green: acknowledged; red: only failures; "
        "orange: waiting for an answer that came later; lines: fault injections; "
        "black dashes: a broker crashed on its own)"
    )
    lanes.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_lanes(
    lanes: Any,
    *,
    faults: Sequence[FaultRecord],
    kinds: Sequence[str],
    t0: float,
    end: float,
    colours: dict[str, Any],
) -> None:
    """One lane per fault kind: a bar from injection to the end of the heal."""
    for fault in faults:
        lane = kinds.index(fault.kind)
        start, stop = fault.started - t0, (fault.healed or end) - t0
        lanes.barh(lane, stop - start, left=start, color=colours[fault.kind], alpha=0.7)
        lanes.text(start, lane, fault.target, fontsize=6, va="center", clip_on=True)
    lanes.set_yticks(range(len(kinds)), kinds, fontsize=8)
    lanes.set_ylim(len(kinds) - 0.5, -0.5)
