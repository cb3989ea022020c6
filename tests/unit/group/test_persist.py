"""The ``__consumer_offsets`` format: Java's String.hashCode, the coordinator partition of a
group, and records written with the record builders read back by :func:`replay`."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kbroker.group.persist import (
    group_record,
    instance_record,
    java_string_hash,
    offset_record,
    partition_for_group,
    replay,
    to_batch,
)
from kbroker.group.state import Group, GroupState, Member, OffsetEntry
from kbroker.log.batch import PayloadCodec, encode_header

NOW = 1_700_000_000_000
INT_MIN = -(1 << 31)
Record = dict[str, Any]


def java_hash_reference(text: str) -> int:
    """Java's algorithm spelt out: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units (a code
    point above U+FFFF is two units, its surrogate pair), wrapped to a signed 32-bit int."""
    h = 0
    for char in text:
        cp = ord(char)
        pair = [0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)]
        units = pair if cp > 0xFFFF else [cp]
        for unit in units:
            h = (31 * h + unit) % (1 << 32)
    return h - (1 << 32) if h >= 1 << 31 else h


def encode(batches: list[list[Record]], *, base: int = 0, codec: int = PayloadCodec.JSON) -> bytes:
    """Stored batches, as the log holds them, for ``batches`` of records."""
    out = bytearray()
    for records in batches:
        batch = to_batch(records, NOW)
        out += encode_header(
            batch.payload,
            base_offset=base,
            leader_epoch=0,
            attributes=batch.attributes | codec,
            record_count=batch.record_count,
            first_timestamp=batch.first_timestamp,
            max_timestamp=batch.max_timestamp,
        )
        out += batch.payload
        base += batch.record_count
    return bytes(out)


# ------------------------------------------------------------------------------ hashing


def test_java_string_hash_vectors() -> None:
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112  # the classic collision
    assert java_string_hash("polygenelubricants") == INT_MIN
    assert java_string_hash("my-consumer-group") == 1513705513
    assert java_string_hash("é") == 233  # one UTF-16 unit, not two UTF-8 bytes
    assert java_string_hash("日本") == 26085 * 31 + 26412
    assert java_string_hash("😀") == 0xD83D * 31 + 0xDE00  # a surrogate pair: two units
    assert java_string_hash("group-😀-ü") == -1358452320  # wraps to negative


def test_java_string_hash_of_lone_surrogates() -> None:
    # A Java String may hold an unpaired surrogate; its hash is over that code unit.
    assert java_string_hash("\ud800") == 0xD800
    assert java_string_hash("x\udc00y") == java_hash_reference("x\udc00y")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_java_string_hash_matches_the_algorithm(text: str) -> None:
    h = java_string_hash(text)
    assert h == java_hash_reference(text)
    assert INT_MIN <= h < 1 << 31


def test_partition_for_group_vectors() -> None:
    assert partition_for_group("hello", 50) == 99162322 % 50 == 22
    # Utils.abs(Integer.MIN_VALUE) is 0, whatever the partition count.
    for partitions in (1, 3, 7, 50):
        assert partition_for_group("polygenelubricants", partitions) == 0
    assert partition_for_group("group-😀-ü", 50) == 1358452320 % 50 == 20
    assert partition_for_group("", 50) == 0


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30), partitions=st.integers(1, 1000))
def test_partition_for_group_is_abs_hash_mod_partitions(text: str, partitions: int) -> None:
    h = java_hash_reference(text)
    expected = (0 if h == INT_MIN else abs(h)) % partitions
    assert partition_for_group(text, partitions) == expected


# ------------------------------------------------------------------------------ records


def member(member_id: str, **fields: Any) -> Member:
    return Member(member_id=member_id, client_id="c", **fields)


def test_records_round_trip_through_stored_batches() -> None:
    group = Group("g1", generation=7, assignor="range")
    group.members = {
        "a": member(
            "a",
            instance_id="static-a",
            topics=("t", "u"),
            assignor="range",
            session_timeout_ms=7000,
            rebalance_timeout_ms=9000,
            assignment=[("t", 0), ("u", 1)],
        ),
        "b": member("b", topics=("t",), rest_instance="rest-b", assignment=[("t", 1)]),
    }
    empty = Group("g2", generation=3, empty_since_ms=NOW - 5)
    settings_doc = {"format": "json", "auto_commit": True, "topics": ["t"]}
    data = encode(
        [
            [
                offset_record("g1", "t", 0, OffsetEntry(10, "m", NOW)),
                offset_record("g1", "u", 1, OffsetEntry(20, "", NOW + 1)),
                group_record(group, "g1"),
            ],
            [group_record(empty, "g2"), offset_record("g2", "t", 3, OffsetEntry(5))],
            [instance_record("g1", "rest-b", settings_doc)],
        ],
        base=100,
    )
    loaded = replay([data])
    g1, g2 = loaded.groups["g1"], loaded.groups["g2"]
    assert (g1.state, g1.generation, g1.assignor, g1.empty_since_ms) == (
        GroupState.STABLE,
        7,
        "range",
        None,
    )
    assert {m: x.to_json() for m, x in g1.members.items()} == {
        m: x.to_json() for m, x in group.members.items()
    }
    assert g1.offsets == {
        ("t", 0): OffsetEntry(10, "m", NOW),
        ("u", 1): OffsetEntry(20, "", NOW + 1),
    }
    assert (g2.state, g2.generation, g2.empty_since_ms, g2.members) == (
        GroupState.EMPTY,
        3,
        NOW - 5,
        {},
    )
    assert g2.offsets == {("t", 3): OffsetEntry(5, "", 0)}
    assert loaded.instances == {("g1", "rest-b"): settings_doc}
    assert set(loaded.groups) == {"g1", "g2"}


def test_tombstones_delete_and_the_last_value_wins() -> None:
    group = Group("g", generation=1)
    group.members = {"a": member("a", topics=("t",), assignment=[("t", 0)])}
    later = Group("g", generation=2)
    data = encode(
        [
            [
                offset_record("g", "t", 0, OffsetEntry(1)),
                offset_record("g", "t", 1, OffsetEntry(1)),
            ],
            [offset_record("g", "t", 0, OffsetEntry(2)), group_record(group, "g")],
            [offset_record("g", "t", 1, None), group_record(later, "g")],
            [instance_record("g", "i", {"x": 1}), instance_record("g", "i", {"x": 2})],
            [instance_record("g", "j", {"x": 3}), instance_record("g", "j", None)],
            [offset_record("h", "t", 0, OffsetEntry(9)), group_record(None, "h")],
        ]
    )
    loaded = replay([data])
    assert set(loaded.groups) == {"g"}, "a group tombstone removes the group and its offsets"
    g = loaded.groups["g"]
    assert g.offsets == {("t", 0): OffsetEntry(2)}
    assert (g.generation, g.members, g.state) == (2, {}, GroupState.EMPTY)
    assert loaded.instances == {("g", "i"): {"x": 2}}


def test_replay_in_pieces_equals_replay_at_once_and_skips_foreign_batches() -> None:
    first = encode([[offset_record("g", "t", 0, OffsetEntry(1))]])
    foreign = encode([[{"key": "x", "value": "y"}]], base=1, codec=PayloadCodec.BINARY)
    junk = encode([[{"key": {"type": "offset"}, "value": None}, {"key": [1]}]], base=2)
    second = encode([[offset_record("g", "t", 0, OffsetEntry(5))]], base=4)
    at_once = replay([first + foreign + junk + second])
    pieces = replay([second], replay([first, foreign, junk]))
    assert at_once.groups["g"].offsets == pieces.groups["g"].offsets == {("t", 0): OffsetEntry(5)}
    assert set(at_once.groups) == {"g"}


# ------------------------------------------------------------- replay against a dict model

GROUPS = ("g0", "g1", "g2")
op_st = st.one_of(
    st.tuples(
        st.just("offset"),
        st.sampled_from(GROUPS),
        st.sampled_from(("t", "u")),
        st.integers(0, 3),
        st.none() | st.integers(0, 10**12),
    ),
    st.tuples(
        st.just("group"),
        st.sampled_from(GROUPS),
        st.none() | st.integers(0, 50),
        st.lists(st.sampled_from(("m1", "m2", "m3")), unique=True, max_size=3),
    ),
    st.tuples(
        st.just("instance"),
        st.sampled_from(GROUPS),
        st.sampled_from(("i1", "i2")),
        st.none() | st.integers(0, 9),
    ),
)


class Model:
    """What a replay must give: the latest value per key; a group tombstone also drops the
    group's offsets; any offset record (as replay does) brings its group into existence."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}

    def group(self, group_id: str) -> dict[str, Any]:
        return self.groups.setdefault(
            group_id, {"generation": 0, "members": [], "empty_since": None, "offsets": {}}
        )

    def apply(self, op: tuple[Any, ...]) -> Record:
        if op[0] == "offset":
            _, g, t, p, offset = op
            entry = None if offset is None else OffsetEntry(offset, f"m{offset % 3}", offset + 1)
            offsets = self.group(g)["offsets"]
            if entry is None:
                offsets.pop((t, p), None)
            else:
                offsets[(t, p)] = entry
            return offset_record(g, t, p, entry)
        if op[0] == "group":
            _, g, generation, members = op
            if generation is None:
                self.groups.pop(g, None)
                return group_record(None, g)
            group = Group(g, generation=generation, empty_since_ms=None if members else generation)
            group.members = {m: member(m, topics=("t",), assignment=[("t", 0)]) for m in members}
            doc = self.group(g)
            doc.update(generation=generation, members=members, empty_since=group.empty_since_ms)
            return group_record(group, g)
        _, g, name, value = op
        settings_doc = None if value is None else {"format": "json", "n": value}
        if settings_doc is None:
            self.instances.pop((g, name), None)
        else:
            self.instances[(g, name)] = settings_doc
        return instance_record(g, name, settings_doc)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op_st, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_replay_equals_a_dict_model(ops: list[tuple[Any, ...]], cuts: list[int]) -> None:
    model = Model()
    records = [model.apply(op) for op in ops]
    bounds = sorted({0, len(records), *(c for c in cuts if c < len(records))})
    batches = [records[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    loaded = replay([encode(batches)]) if batches else replay([])
    assert set(loaded.groups) == set(model.groups)
    for g, expected in model.groups.items():
        group = loaded.groups[g]
        assert group.generation == expected["generation"]
        assert sorted(group.members) == sorted(expected["members"])
        assert group.state is (GroupState.STABLE if expected["members"] else GroupState.EMPTY)
        assert group.empty_since_ms == expected["empty_since"]
        assert group.offsets == expected["offsets"]
    assert loaded.instances == model.instances
