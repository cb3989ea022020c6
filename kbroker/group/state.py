"""A consumer group's state machine, members and committed offsets (in memory).

States and legal transitions (Kafka's, with server-side assignment there is no separate
AwaitingSync step: the coordinator assigns when the joins are complete)::

    Empty              -> PreparingRebalance (a member joins), Dead (offsets expired)
    PreparingRebalance -> Stable (all members rejoined, or the rebalance timeout passed),
                          Empty (everyone left or timed out), Dead
    Stable             -> PreparingRebalance (join, leave, session expiry, subscription
                          change), Dead
    Dead               -> (terminal: the group was deleted or unloaded)

Actions per state: heartbeats answer REBALANCE_IN_PROGRESS during PreparingRebalance; commits
are accepted from members of the current generation in Stable and PreparingRebalance (the
previous generation's owners may still commit what they processed), and from simple consumers
(no member id, generation -1) only while the group has no members.

Owned by the coordinator's event loop; never shared across threads.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any, Final

from kbroker.errors import BrokerError, ErrorCode

__all__ = ["Group", "GroupState", "Member", "OffsetEntry", "TopicPartition"]

TopicPartition = tuple[str, int]


class GroupState(enum.StrEnum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_TRANSITIONS: Final[dict[GroupState, frozenset[GroupState]]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE, GroupState.DEAD}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.EMPTY, GroupState.DEAD}
    ),
    GroupState.STABLE: frozenset({GroupState.PREPARING_REBALANCE, GroupState.DEAD}),
    GroupState.DEAD: frozenset(),
}


@dataclass(slots=True)
class OffsetEntry:
    """A committed offset: the next offset the group will consume from the partition."""

    offset: int
    metadata: str = ""
    commit_timestamp: int = 0


@dataclass(slots=True, kw_only=True)
class Member:
    """A group member. Persisted fields first; runtime fields are rebuilt after a load."""

    member_id: str
    client_id: str
    instance_id: str | None = None
    topics: tuple[str, ...] = ()
    pattern: str | None = None
    assignor: str = "sticky"
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int = 30_000
    rest_instance: str | None = None
    """Name of the REST v2 consumer instance this member stands for (server-managed)."""
    assignment: list[TopicPartition] = field(default_factory=list)
    # runtime only
    deadline: float = 0.0
    """Monotonic time after which the member is expired (no heartbeat)."""
    joined: bool = False
    """Rejoined during the current rebalance."""
    join_waiter: asyncio.Future[None] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "client_id": self.client_id,
            "instance_id": self.instance_id,
            "topics": list(self.topics),
            "pattern": self.pattern,
            "assignor": self.assignor,
            "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "rest_instance": self.rest_instance,
            "assignment": [list(tp) for tp in self.assignment],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Member:
        return cls(
            member_id=doc["member_id"],
            client_id=doc["client_id"],
            instance_id=doc.get("instance_id"),
            topics=tuple(doc.get("topics") or ()),
            pattern=doc.get("pattern"),
            assignor=doc.get("assignor") or "sticky",
            session_timeout_ms=int(doc.get("session_timeout_ms") or 10_000),
            rebalance_timeout_ms=int(doc.get("rebalance_timeout_ms") or 30_000),
            rest_instance=doc.get("rest_instance"),
            assignment=[(t, int(p)) for t, p in doc.get("assignment") or ()],
        )


@dataclass(slots=True)
class Group:
    """One consumer group (see the module docstring for states and rules)."""

    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    assignor: str = "sticky"
    members: dict[str, Member] = field(default_factory=dict)
    offsets: dict[TopicPartition, OffsetEntry] = field(default_factory=dict)
    empty_since_ms: int | None = None
    rebalance_deadline: float = 0.0
    initial_rebalance: bool = False
    """The rebalance started from Empty: wait group.initial.rebalance.delay.ms for more."""
    persisted: dict[str, Any] | None = None
    """The group document last committed to the log (what a replay gives; None if none).
    Differs from :meth:`to_json` during a rebalance, whose membership is not durable."""

    def transition(self, target: GroupState) -> None:
        """Move to ``target``; an illegal transition is a bug and raises."""
        if target is self.state:
            return
        if target not in _TRANSITIONS[self.state]:
            raise AssertionError(
                f"group {self.group_id}: illegal transition {self.state} -> {target}"
            )
        self.state = target

    def member(self, member_id: str) -> Member:
        member = self.members.get(member_id)
        if member is None:
            raise BrokerError(
                f"Member {member_id} is not in group {self.group_id}; join again",
                ErrorCode.UNKNOWN_MEMBER_ID,
            )
        return member

    def check_generation(self, member_id: str | None, generation: int) -> None:
        """The fencing rule for commits (Kafka's, see the module docstring)."""
        if not member_id or generation < 0:
            if self.members:
                raise BrokerError(
                    f"Group {self.group_id} has members: commit with a member id and generation",
                    ErrorCode.UNKNOWN_MEMBER_ID,
                )
            return
        self.member(member_id)
        if generation != self.generation:
            raise BrokerError(
                f"Generation {generation} of group {self.group_id} is stale (now "
                f"{self.generation}): the group rebalanced",
                ErrorCode.ILLEGAL_GENERATION,
            )

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.topics}

    def owner_of(self, tp: TopicPartition) -> Member | None:
        for member in self.members.values():
            if tp in member.assignment:
                return member
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "assignor": self.assignor,
            "state": self.state.value,
            "empty_since_ms": self.empty_since_ms,
            "members": [m.to_json() for m in self.members.values()],
        }
