"""kbctl cluster, topics and groups commands."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from kclient.admin import Admin
from kclient.cli import EXIT_FAILURE, EXIT_OK, UsageError
from kclient.cli._output import print_json, print_table
from kclient.errors import TopicAlreadyExistsError, UnknownTopicError

__all__ = [
    "cluster",
    "groups_describe",
    "groups_list",
    "groups_reset",
    "topics_alter",
    "topics_create",
    "topics_delete",
    "topics_describe",
    "topics_list",
]


def admin(args: argparse.Namespace) -> Admin:
    return Admin(args.bootstrap, client_id="kbctl", request_timeout_ms=args.timeout * 1000)


def _configs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"config {pair!r} must be NAME=VALUE")
        out[name.strip()] = value
    return out


def _done(args: argparse.Namespace, message: str, doc: dict[str, Any]) -> int:
    if args.output == "json":
        print_json(doc)
    else:
        print(message)
    return EXIT_OK


# ------------------------------------------------------------------------------- cluster


def cluster(args: argparse.Namespace) -> int:
    with admin(args) as client:
        described = client.describe_cluster()
        topics = client.describe_topics()
    unhealthy = [p for t in topics for p in t.partitions if p.under_replicated or p.offline]
    under = [p for p in unhealthy if p.under_replicated and not p.offline]
    offline = [p for p in unhealthy if p.offline]
    if args.output == "json":
        print_json(
            {
                "cluster_id": described.cluster_id,
                "controller": described.controller,
                "brokers": [b._asdict() for b in described.brokers],
                "topics": len(topics),
                "partitions": sum(len(t.partitions) for t in topics),
                "under_replicated_partitions": [_partition_doc(p) for p in under],
                "offline_partitions": [_partition_doc(p) for p in offline],
            }
        )
        return EXIT_OK
    print(
        f"Cluster {described.cluster_id}: {len(described.brokers)} brokers, controller "
        f"{described.controller if described.controller is not None else 'none'}, "
        f"{len(topics)} topics, {sum(len(t.partitions) for t in topics)} partitions"
    )
    print()
    print_table(
        ["id", "url", "rack", "controller"],
        [[b.broker_id, b.url, b.rack, b.is_controller] for b in described.brokers],
    )
    print()
    print(f"Under-replicated partitions: {len(under)}    Offline partitions: {len(offline)}")
    if unhealthy:
        print()
        _partition_table(unhealthy)
    return EXIT_OK


def _partition_doc(p: Any) -> dict[str, Any]:
    return dict(p._asdict())


def _partition_table(partitions: list[Any]) -> None:
    print_table(
        [
            "topic",
            "partition",
            "leader",
            "epoch",
            "replicas",
            "isr",
            "log start",
            "hw",
            "leo",
            "status",
        ],
        [
            [
                p.topic,
                p.partition,
                p.leader,
                p.leader_epoch,
                p.replicas,
                p.isr,
                p.log_start_offset,
                p.high_watermark,
                p.log_end_offset,
                "offline" if p.offline else "under-replicated" if p.under_replicated else "ok",
            ]
            for p in partitions
        ],
    )


# -------------------------------------------------------------------------------- topics


def topics_list(args: argparse.Namespace) -> int:
    with admin(args) as client:
        listings = client.topic_listings(internal=args.internal)
    if args.output == "json":
        print_json([t._asdict() for t in listings])
        return EXIT_OK
    print_table(
        ["topic", "partitions", "replication", "under-replicated", "offline"],
        [
            [
                t.name,
                t.partitions,
                t.replication_factor,
                t.under_replicated_partitions,
                t.offline_partitions,
            ]
            for t in listings
        ],
    )
    return EXIT_OK


def topics_create(args: argparse.Namespace) -> int:
    configs = _configs(args.config)
    with admin(args) as client:
        try:
            client.create_topic(
                args.topic,
                partitions=args.partitions,
                replication_factor=args.replication_factor,
                configs=configs,
                validate_only=args.validate_only,
            )
        except TopicAlreadyExistsError:
            if not args.if_not_exists:
                raise
            return _done(
                args, f"Topic {args.topic} already exists", {"topic": args.topic, "created": False}
            )
    verb = "is valid" if args.validate_only else "created"
    return _done(
        args, f"Topic {args.topic} {verb}", {"topic": args.topic, "created": not args.validate_only}
    )


def topics_describe(args: argparse.Namespace) -> int:
    with admin(args) as client:
        topic = client.describe_topic(args.topic)
        configs = client.describe_configs(args.topic)
    shown = [c for c in configs if args.all_configs or not c.is_default]
    if args.output == "json":
        print_json(
            {
                "topic": topic.name,
                "partitions": [_partition_doc(p) for p in topic.partitions],
                "configs": {c.name: c.value for c in configs},
                "overrides": {c.name: c.value for c in configs if not c.is_default},
            }
        )
        return EXIT_OK
    print(
        f"Topic {topic.name}: {len(topic.partitions)} "
        f"partition{'' if len(topic.partitions) == 1 else 's'}, replication factor "
        f"{topic.replication_factor}"
    )
    print()
    _partition_table(topic.partitions)
    print()
    if shown:
        print_table(["config", "value", "source"], [[c.name, c.value, c.source] for c in shown])
    else:
        print("Configs: all defaults (--all-configs to list them)")
    return EXIT_OK


def topics_alter(args: argparse.Namespace) -> int:
    configs = _configs(args.config)
    if args.partitions is None and not configs and not args.delete_config:
        raise UsageError("nothing to alter: give --partitions, --config or --delete-config")
    with admin(args) as client:
        if args.partitions is not None:
            client.create_partitions(args.topic, args.partitions)
        if configs or args.delete_config:
            client.alter_configs(args.topic, set_configs=configs, delete_configs=args.delete_config)
    return _done(args, f"Topic {args.topic} altered", {"topic": args.topic, "altered": True})


def topics_delete(args: argparse.Namespace) -> int:
    with admin(args) as client:
        try:
            client.delete_topic(args.topic)
        except UnknownTopicError:
            if not args.if_exists:
                raise
            return _done(
                args, f"Topic {args.topic} does not exist", {"topic": args.topic, "deleted": False}
            )
    return _done(args, f"Topic {args.topic} deleted", {"topic": args.topic, "deleted": True})


# -------------------------------------------------------------------------------- groups


def groups_list(args: argparse.Namespace) -> int:
    with admin(args) as client:
        groups = client.list_groups()
    if args.output == "json":
        print_json([g._asdict() for g in groups])
        return EXIT_OK
    print_table(["group", "state", "members"], [[g.group_id, g.state, g.members] for g in groups])
    return EXIT_OK


def groups_describe(args: argparse.Namespace) -> int:
    with admin(args) as client:
        group = client.describe_group(args.group)
        lags = client.group_lag(args.group)
    if args.output == "json":
        print_json(
            {
                "group_id": group.group_id,
                "state": group.state,
                "generation_id": group.generation_id,
                "assignor": group.assignor,
                "members": [
                    {**m._asdict(), "assignment": [tp._asdict() for tp in m.assignment]}
                    for m in group.members
                ],
                "lag": [lag._asdict() for lag in lags],
                "total_lag": sum(lag.lag for lag in lags),
            }
        )
        return EXIT_OK
    print(
        f"Group {group.group_id}: {group.state}, generation {group.generation_id}, "
        f"assignor {group.assignor or '-'}, {len(group.members)} members, "
        f"total lag {sum(lag.lag for lag in lags)}"
    )
    if group.members:
        print()
        print_table(
            ["member", "client", "instance", "partitions"],
            [
                [
                    m.member_id,
                    m.client_id,
                    m.group_instance_id,
                    " ".join(f"{tp.topic}-{tp.partition}" for tp in m.assignment),
                ]
                for m in group.members
            ],
        )
    print()
    print_table(
        ["topic", "partition", "committed", "log end", "lag", "member"],
        [
            [lag.topic, lag.partition, lag.committed, lag.log_end_offset, lag.lag, lag.consumer_id]
            for lag in lags
        ],
    )
    return EXIT_OK


def _reset_target(args: argparse.Namespace) -> dict[str, Any]:
    if args.to_earliest:
        return {"to": "earliest"}
    if args.to_latest:
        return {"to": "latest"}
    if args.to_offset is not None:
        if args.to_offset < 0:
            raise UsageError("--to-offset must be >= 0")
        return {"to": "offset", "offset": args.to_offset}
    if args.to_timestamp is not None:
        return {"to": "timestamp", "timestamp": args.to_timestamp}
    try:
        moment = datetime.fromisoformat(args.to_datetime.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--to-datetime {args.to_datetime!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return {"to": "timestamp", "timestamp": int(moment.timestamp() * 1000)}


def groups_reset(args: argparse.Namespace) -> int:
    target = _reset_target(args)
    with admin(args) as client:
        offsets = client.reset_group_offsets(
            args.group, args.topic, partitions=args.partition, **target
        )
    if args.output == "json":
        print_json(
            [
                {"topic": tp.topic, "partition": tp.partition, "offset": o}
                for tp, o in sorted(offsets.items())
            ]
        )
        return EXIT_OK
    print_table(
        ["topic", "partition", "new offset"],
        [[tp.topic, tp.partition, o] for tp, o in sorted(offsets.items())],
    )
    return EXIT_OK if offsets else EXIT_FAILURE
