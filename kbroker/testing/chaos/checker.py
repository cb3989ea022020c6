"""The chaos checker: Jepsen's anomaly taxonomy applied to one run's histories.

It wraps :func:`kbroker.testing.workload.check` (the writer's view: ``lost``, ``duplicated``,
``inconsistent_offsets``, ``reordered``, ``unexpected``) and adds:

* ``read_above_hw``: a poll returned a record at or above the high watermark the same response
  reported;
* ``dirty_reads``: a poll returned (offset, value) that the final log does not hold: the
  consumer saw data that was later truncated (read past the true high watermark, or an aborted
  write), or an offset that means something else now;
* ``int_poll_skips`` / ``poll_skips``: a poll's records are not contiguous from the offset it
  asked for (offsets the final log holds were jumped over), within the poll or at its start;
* ``nonmonotonic_polls``: a poll's offsets go backwards, or start below the offset asked for;
* ``group_skips``: offsets below the group's final committed offset that no member ever
  received (the group committed past records nobody processed);
* ``committed_backwards``: a read of committed offsets, or an acknowledged commit, is lower than
  a commit acknowledged (or a value read) before it began;
* ``controller_epoch_conflicts``: two brokers claimed the same controller epoch (their logs), or
  ZooKeeper showed two controllers for one epoch, or the epoch going back;
* ``leader_epoch_conflicts``: a partition's leader epoch went back or named two leaders;
* ``divergent_replicas``: partitions whose replicas' log bytes still differ after healing;
* ``sequence_errors``: idempotent retries refused as out of order (a sign the leader lost the
  batch before: reported, and counted as an anomaly).

It also computes availability: for each fault, per partition, the longest stretch without an
acknowledged write inside the fault's window (from injection to :data:`SETTLE_S` after the
heal, or to the next fault's injection if that comes first); and per fault kind the median and
maximum of the worst partition's figure, over faults that did not overlap another one.

Pure functions over the histories; no I/O.
"""

from __future__ import annotations

import itertools
import re
import statistics
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kbroker.testing.chaos.clients import Attempt, CommitEvent, IdempotentWriter, Poll
from kbroker.testing.chaos.monitor import ControllerSample, StateSample
from kbroker.testing.chaos.nemesis import FaultRecord
from kbroker.testing.workload import check

__all__ = [
    "ANOMALIES",
    "SETTLE_S",
    "ChaosResult",
    "availability",
    "check_all",
    "controller_claims",
    "longest_gaps",
]

SETTLE_S: Final = 10.0
"""How long after a heal a fault's effects still count towards its unavailability."""
ANOMALIES: Final = (
    "lost",
    "duplicated",
    "inconsistent_offsets",
    "reordered",
    "unexpected",
    "read_above_hw",
    "dirty_reads",
    "int_poll_skips",
    "poll_skips",
    "nonmonotonic_polls",
    "group_skips",
    "committed_backwards",
    "controller_epoch_conflicts",
    "leader_epoch_conflicts",
    "divergent_replicas",
    "sequence_errors",
)
_ELECTED: Final = re.compile(r"broker (\d+) elected controller, epoch (\d+)")
_EXAMPLES: Final = 10


@dataclass(slots=True)
class ChaosResult:
    """Counts and a few examples of every anomaly, plus the workload's totals."""

    totals: dict[str, int]
    anomalies: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.anomalies.values())

    def counts(self) -> dict[str, int]:
        return {name: len(self.anomalies.get(name, [])) for name in ANOMALIES}

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "totals": self.totals,
            "anomalies": self.counts(),
            "examples": {k: v[:_EXAMPLES] for k, v in self.anomalies.items() if v},
        }

    def summary(self) -> str:
        totals = " ".join(f"{k}={v}" for k, v in self.totals.items())
        counts = " ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"{'CLEAN' if self.ok else 'ANOMALIES'}: {totals}\n  {counts}"


@dataclass(frozen=True, slots=True)
class History:
    """Everything one run observed, as the checker needs it."""

    writer: IdempotentWriter
    logs: Mapping[int, Sequence[tuple[int, Any]]]
    """Final contents of each partition (offset, value), read after healing."""
    polls: Sequence[Poll]
    commits: Sequence[CommitEvent]
    final_committed: Mapping[int, int]
    controllers: Sequence[ControllerSample]
    states: Sequence[StateSample]
    controller_claims: Sequence[tuple[int, int]]
    """(broker, epoch) of every 'elected controller' line in the broker logs."""
    divergent: Sequence[int]


def controller_claims(lines: Iterable[str]) -> list[tuple[int, int]]:
    """(broker, epoch) pairs from broker log lines."""
    return [(int(m.group(1)), int(m.group(2))) for line in lines if (m := _ELECTED.search(line))]


def check_all(history: History) -> ChaosResult:
    """Run every check (see the module docstring)."""
    base = check(history.writer, {p: list(e) for p, e in history.logs.items()})
    outcomes = history.writer.history.values()
    totals = {
        "attempted_records": len(history.writer.history),
        "acked": base.acked,
        "indeterminate": base.indeterminate,
        "refused": sum(o.status == "refused" for o in outcomes),
        "read_back": base.read,
        "polls": len(history.polls),
        "polled_records": sum(len(p.records) for p in history.polls),
        "commits_ok": sum(c.kind == "commit" and c.status == "ok" for c in history.commits),
    }
    anomalies: dict[str, list[Any]] = {
        "lost": base.lost,
        "duplicated": base.duplicated,
        "inconsistent_offsets": base.inconsistent_offsets,
        "reordered": base.reordered,
        "unexpected": base.unexpected,
        "sequence_errors": [list(e) for e in history.writer.sequence_errors],
        "divergent_replicas": list(history.divergent),
    }
    anomalies.update(_check_polls(history.polls, history.logs))
    anomalies["group_skips"] = _group_skips(history.polls, history.logs, history.final_committed)
    anomalies["committed_backwards"] = _committed_backwards(history.commits)
    anomalies["controller_epoch_conflicts"] = _controller_conflicts(
        history.controllers, history.controller_claims
    )
    anomalies["leader_epoch_conflicts"] = _leader_conflicts(history.states)
    return ChaosResult(totals=totals, anomalies=anomalies)


def _check_polls(
    polls: Sequence[Poll], logs: Mapping[int, Sequence[tuple[int, Any]]]
) -> dict[str, list[Any]]:
    final = {p: dict(entries) for p, entries in logs.items()}
    out: dict[str, list[Any]] = {
        "read_above_hw": [],
        "dirty_reads": [],
        "int_poll_skips": [],
        "poll_skips": [],
        "nonmonotonic_polls": [],
    }
    for poll in polls:
        if not poll.records:
            continue
        held = final.get(poll.partition, {})
        where = [poll.member, poll.partition, poll.offset]
        offsets = [o for o, _ in poll.records]
        if poll.high_watermark is not None and offsets[-1] >= poll.high_watermark:
            out["read_above_hw"].append([*where, offsets[-1], poll.high_watermark])
        for offset, value in poll.records:
            if held.get(offset, _MISSING) != value:
                out["dirty_reads"].append([*where, offset, value, held.get(offset)])
        if offsets[0] < poll.offset or any(b <= a for a, b in itertools.pairwise(offsets)):
            out["nonmonotonic_polls"].append([*where, offsets[:5]])
            continue
        if any(o in held for o in range(poll.offset, offsets[0])):
            out["poll_skips"].append([*where, offsets[0]])
        for a, b in itertools.pairwise(offsets):
            if any(o in held for o in range(a + 1, b)):
                out["int_poll_skips"].append([*where, a, b])
    return out


_MISSING: Final = object()


def _group_skips(
    polls: Sequence[Poll],
    logs: Mapping[int, Sequence[tuple[int, Any]]],
    final_committed: Mapping[int, int],
) -> list[Any]:
    received: dict[int, set[int]] = defaultdict(set)
    for poll in polls:
        received[poll.partition].update(o for o, _ in poll.records)
    skips: list[Any] = []
    for partition, entries in logs.items():
        committed = final_committed.get(partition, 0)
        missing = [o for o, _ in entries if o < committed and o not in received[partition]]
        if missing:
            skips.append([partition, len(missing), missing[:5]])
    return skips


def _committed_backwards(commits: Sequence[CommitEvent]) -> list[Any]:
    """Per partition: a value read, or committed and acknowledged, below a floor set by an
    acknowledged commit or a read that had *finished* before it began."""
    floors: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for event in commits:
        if event.status == "ok":
            for partition, offset in event.offsets:
                floors[partition].append((event.ended, offset))
    prefix: dict[int, tuple[list[float], list[int]]] = {}
    for partition, items in floors.items():
        items.sort()
        best, running = [], -1
        for _, offset in items:
            running = max(running, offset)
            best.append(running)
        prefix[partition] = ([t for t, _ in items], best)
    out: list[Any] = []
    for event in commits:
        if event.status != "ok":
            continue
        for partition, offset in event.offsets:
            times, best = prefix.get(partition, ([], []))
            index = bisect_left(times, event.started) - 1
            if index >= 0 and offset < best[index]:
                out.append([event.kind, event.member, partition, offset, best[index]])
    return out


def _controller_conflicts(
    samples: Sequence[ControllerSample], claims: Sequence[tuple[int, int]]
) -> list[Any]:
    out: list[Any] = []
    by_epoch: dict[int, set[int]] = defaultdict(set)
    for broker, epoch in claims:
        by_epoch[epoch].add(broker)
    for sample in samples:
        if sample.paired and sample.controller is not None:
            by_epoch[sample.epoch].add(sample.controller)
    out += [["epoch", e, sorted(b)] for e, b in sorted(by_epoch.items()) if len(b) > 1]
    out += [
        ["epoch went back", a.epoch, b.epoch]
        for a, b in itertools.pairwise(samples)
        if b.epoch < a.epoch
    ]
    return out


def _leader_conflicts(states: Sequence[StateSample]) -> list[Any]:
    out: list[Any] = []
    leaders: dict[tuple[int, int], set[int]] = defaultdict(set)
    last: dict[int, int] = {}
    for state in states:
        leaders[(state.partition, state.leader_epoch)].add(state.leader)
        if state.leader_epoch < last.get(state.partition, -1):
            out.append(["epoch went back", state.partition, last[state.partition]])
        last[state.partition] = max(last.get(state.partition, -1), state.leader_epoch)
    out += [[p, e, sorted(b)] for (p, e), b in sorted(leaders.items()) if len(b) > 1]
    return out


# ------------------------------------------------------------------------------ availability


def _ack_times(attempts: Sequence[Attempt]) -> dict[int, list[float]]:
    acks: dict[int, list[float]] = defaultdict(list)
    for attempt in attempts:
        if attempt.ok:
            acks[attempt.partition].append(attempt.ended)
    for times in acks.values():
        times.sort()
    return acks


def _longest_gap(times: Sequence[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without an ack: the gaps between consecutive acks
    (and the window's ends), each clipped to the window."""
    first = bisect_left(times, start)
    last = bisect_left(times, end)
    window = [start, *times[first:last], end]
    return max((b - a for a, b in itertools.pairwise(window)), default=0.0)


def longest_gaps(
    attempts: Sequence[Attempt], partitions: int, start: float, end: float
) -> list[float]:
    """Per partition, the longest time without an acknowledged write in [start, end]."""
    acks = _ack_times(attempts)
    return [round(_longest_gap(acks[p], start, end), 2) for p in range(partitions)]


def availability(
    attempts: Sequence[Attempt],
    commits: Sequence[CommitEvent],
    faults: Sequence[FaultRecord],
    partitions: int,
    end: float,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per fault: the unavailability of each partition's writes and of the group's commits;
    per kind: median and max of the worst partition (of the group's commits for
    member-crash), over faults that overlapped no other and were injected without error."""
    acks = _ack_times(attempts)
    commit_times = sorted(c.ended for c in commits if c.kind == "commit" and c.status == "ok")
    per_fault: list[dict[str, Any]] = []
    per_kind: dict[str, list[float]] = defaultdict(list)
    starts = sorted(f.started for f in faults)
    for fault in faults:
        later = [t for t in starts if t > fault.started]
        healed = fault.healed or end
        stop = min(healed + SETTLE_S, end, max(healed, later[0] if later else end))
        gaps = [round(_longest_gap(acks[p], fault.started, stop), 3) for p in range(partitions)]
        group = round(_longest_gap(commit_times, fault.started, stop), 3)
        per_fault.append({"unavailable_s": gaps, "group_commit_gap_s": group})
        if not fault.overlapped and fault.error is None:
            per_kind[fault.kind].append(group if fault.kind == "member-crash" else max(gaps))
    kinds = {
        kind: {
            "faults": len(values),
            "median_s": round(statistics.median(values), 2),
            "max_s": round(max(values), 2),
        }
        for kind, values in sorted(per_kind.items())
    }
    return per_fault, kinds
