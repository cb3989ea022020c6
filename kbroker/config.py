"""Broker and topic configuration: one table of settings, frozen values, explicit checks.

Every broker setting is a :class:`Setting` row in ``BROKER_SETTINGS`` (name, type, default,
check, doc); every per-topic setting a row in ``TOPIC_SETTINGS``. docs/operations.md is checked
against these tables by the tests, so the table is the single source of truth.

Precedence, lowest first: built-in default, TOML file (``--config``), ``KBROKER_*`` environment
variables, command-line flags. Setting names are Kafka's dotted names (``log.retention.ms``);
the environment variable of a setting is ``KBROKER_`` plus the name upper-cased with dots as
underscores (``KBROKER_LOG_RETENTION_MS``), and the few settings with a command-line flag may
also be set by the flag's name (``--data-dir`` / ``KBROKER_DATA_DIR``).

Values are immutable once built: :class:`BrokerConfig` and :class:`TopicConfig` are frozen
dataclasses, safe to share across tasks and threads.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kbroker.errors import BrokerError, ErrorCode

__all__ = [
    "BROKER_SETTINGS",
    "TOPIC_SETTINGS",
    "BrokerConfig",
    "ConfigError",
    "Setting",
    "TopicConfig",
    "kafka_string",
    "load_broker_config",
    "parse_zookeeper_connect",
    "validate_topic_configs",
]

LONG_MAX: Final = (1 << 63) - 1
LONG_MIN: Final = -(1 << 63)
INT_MAX: Final = (1 << 31) - 1


class ConfigError(ValueError):
    """A broker setting is missing or invalid (raised at start-up)."""


Check = Callable[[Any], str | None]


def at_least(low: int) -> Check:
    def check(value: Any) -> str | None:
        return None if value >= low else f"must be >= {low}"

    return check


def between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _check_listen(value: Any) -> str | None:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT"
    return None


def _check_url(value: Any) -> str | None:
    if value is None or re.fullmatch(r"https?://[^/\s]+(/\S*)?", str(value)):
        return None
    return "must be an http:// or https:// URL"


def _check_origins(value: Any) -> str | None:
    origins = [o.strip() for o in str(value).split(",") if o.strip()]
    if origins == ["*"] or all(re.fullmatch(r"https?://[^/\s*]+", o) for o in origins):
        return None
    return "must be *, empty, or comma-separated origins like https://app.example.com"


def _check_zookeeper(value: Any) -> str | None:
    try:
        parse_zookeeper_connect(str(value))
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One configuration setting: its name, type, default, check and documentation."""

    name: str
    type: type
    default: Any
    doc: str
    check: Check | None = None
    flag: str | None = None
    """Command-line flag (without ``--``) for the few settings that have one."""
    required: bool = False
    nullable: bool = False

    @property
    def attr(self) -> str:
        return self.name.replace(".", "_")

    @property
    def env_names(self) -> tuple[str, ...]:
        names = ["KBROKER_" + self.name.upper().replace(".", "_")]
        if self.flag:
            alias = "KBROKER_" + self.flag.upper().replace("-", "_")
            if alias not in names:
                names.append(alias)
        return tuple(names)

    def convert(self, raw: Any) -> Any:
        """Convert a raw value (string from env/CLI, or TOML value) and check it."""
        if raw is None:
            if self.nullable:
                return None
            raise ConfigError(f"{self.name} must be set")
        value = _convert(self.type, raw, self.name)
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{self.name}={raw!r}: {problem}")
        return value


def _convert(kind: type, raw: Any, name: str) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: must be true or false")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{name}={raw!r}: must be an integer")
        if isinstance(raw, int):
            value = raw
        else:
            text = str(raw).strip()
            # [0-9], not \d: int() would also accept other scripts' digits.
            if not re.fullmatch(r"-?[0-9]{1,19}", text):
                raise ConfigError(f"{name}={raw!r}: must be an integer")
            value = int(text)
        if not LONG_MIN <= value <= LONG_MAX:
            raise ConfigError(f"{name}={raw!r}: must be a 64-bit integer (Kafka's long)")
        return value
    if kind is str:
        if not isinstance(raw, str | int | float):
            raise ConfigError(f"{name}={raw!r}: must be a string")
        return str(raw)
    raise TypeError(kind)  # pragma: no cover - the table only uses the kinds above


_DAY_MS: Final = 24 * 3600 * 1000

BROKER_SETTINGS: Final[tuple[Setting, ...]] = (
    # Identity and endpoints
    Setting(
        name="broker.id",
        type=int,
        default=None,
        required=True,
        flag="broker-id",
        check=between(0, INT_MAX),
        doc="Unique id of this broker in the cluster.",
    ),
    Setting(
        name="zookeeper.connect",
        type=str,
        default=None,
        required=True,
        flag="zookeeper",
        check=_check_zookeeper,
        doc="ZooKeeper ensemble, HOST:PORT[,HOST:PORT...][/chroot].",
    ),
    Setting(
        name="listen",
        type=str,
        default="127.0.0.1:8080",
        flag="listen",
        check=_check_listen,
        doc="HOST:PORT the HTTP API listens on.",
    ),
    Setting(
        name="advertised.url",
        type=str,
        default=None,
        nullable=True,
        flag="advertised-url",
        check=_check_url,
        doc="URL other brokers and clients use to reach this broker (default: http://LISTEN).",
    ),
    Setting(
        name="rack",
        type=str,
        default=None,
        nullable=True,
        flag="rack",
        doc="Rack (or zone) of this broker, for rack-aware replica placement.",
    ),
    Setting(
        name="data.dir",
        type=str,
        default=None,
        required=True,
        flag="data-dir",
        doc="Directory holding the partition logs and checkpoints.",
    ),
    # ZooKeeper session
    Setting(
        name="zookeeper.session.timeout.ms",
        type=int,
        default=6000,
        check=between(1000, 300_000),
        doc="ZooKeeper session timeout.",
    ),
    Setting(
        name="zookeeper.connection.timeout.ms",
        type=int,
        default=15000,
        check=between(100, 300_000),
        doc="How long start-up waits for a first ZooKeeper connection.",
    ),
    # Topic defaults
    Setting(
        name="num.partitions",
        type=int,
        default=1,
        check=between(1, 10_000),
        doc="Partitions of a topic created without a count.",
    ),
    Setting(
        name="max.partitions.per.topic",
        type=int,
        default=10_000,
        check=between(1, 10_000),
        doc="Most partitions a topic may have, at creation or after an increase (422 beyond). "
        "A topic of thousands of partitions takes seconds to be fully led (each broker sets "
        "up its replicas at about 1 ms each here; 2,000 partitions of RF 3 took about 7 s on "
        "a 3-broker cluster, docs/architecture.md); until then its partitions answer the "
        "retriable 50303.",
    ),
    Setting(
        name="default.replication.factor",
        type=int,
        default=1,
        check=between(1, 64),
        doc="Replication factor of a topic created without one.",
    ),
    Setting(
        name="auto.create.topics.enable",
        type=bool,
        default=False,
        doc="Create a topic on first produce to it (off: unknown topics give 40401).",
    ),
    Setting(
        name="min.insync.replicas",
        type=int,
        default=1,
        check=at_least(1),
        doc="Default of the topic setting min.insync.replicas.",
    ),
    Setting(
        name="unclean.leader.election.enable",
        type=bool,
        default=False,
        doc="Default of the topic setting; true may LOSE acknowledged records.",
    ),
    # Log
    Setting(
        name="log.segment.bytes",
        type=int,
        default=1 << 30,
        check=between(1024, INT_MAX),
        doc="Default segment.bytes: roll a segment when it reaches this size.",
    ),
    Setting(
        name="log.roll.ms",
        type=int,
        default=7 * _DAY_MS,
        check=at_least(1),
        doc="Default segment.ms: roll a segment this long after its first batch.",
    ),
    Setting(
        name="log.retention.ms",
        type=int,
        default=7 * _DAY_MS,
        check=at_least(-1),
        doc="Default retention.ms (-1: keep forever).",
    ),
    Setting(
        name="log.retention.bytes",
        type=int,
        default=-1,
        check=at_least(-1),
        doc="Default retention.bytes per partition (-1: no size limit).",
    ),
    Setting(
        name="log.retention.check.interval.ms",
        type=int,
        default=300_000,
        check=at_least(10),
        doc="How often retention runs.",
    ),
    Setting(
        name="log.index.interval.bytes",
        type=int,
        default=4096,
        check=at_least(0),
        doc="Bytes between offset-index entries.",
    ),
    Setting(
        name="log.flush.interval.messages",
        type=int,
        default=LONG_MAX,
        check=at_least(1),
        doc="Default flush.messages: fsync after this many records; 1 makes every "
        "produce wait for fsync (group commit) before it is acknowledged.",
    ),
    Setting(
        name="log.flush.interval.ms",
        type=int,
        default=LONG_MAX,
        check=at_least(0),
        doc="Default flush.ms: fsync when the oldest unflushed batch is this old.",
    ),
    Setting(
        name="log.flush.offset.checkpoint.interval.ms",
        type=int,
        default=60_000,
        check=at_least(100),
        doc="How often the recovery-point checkpoint is written.",
    ),
    Setting(
        name="message.max.bytes",
        type=int,
        default=1_048_588,
        check=between(64, INT_MAX),
        doc="Default max.message.bytes: the largest stored batch; a single record "
        "larger than this is refused with 41302.",
    ),
    # HTTP
    Setting(
        name="num.http.workers",
        type=int,
        default=0,
        check=between(0, 64),
        doc="HTTP worker processes that take every client connection (SO_REUSEPORT on the "
        "broker's address, which the broker process then does not listen on). They parse and "
        "encode produce bodies and render fetched records, so that JSON work uses more than "
        "one core; 0 serves everything from the broker process. See docs/benchmarks.md for "
        "what they gain on a given machine.",
    ),
    Setting(
        name="access.control.allow.origin",
        type=str,
        default="",
        check=_check_origins,
        doc="CORS, for browser clients: * or a comma-separated list of origins "
        "(scheme://host[:port]) allowed to call the API; empty (the default) sends no CORS "
        "headers. As Confluent REST Proxy's setting of the same name.",
    ),
    Setting(
        name="access.control.allow.methods",
        type=str,
        default="GET,POST,PUT,PATCH,DELETE,HEAD",
        doc="CORS: methods a preflight allows (with access.control.allow.origin set).",
    ),
    Setting(
        name="access.control.allow.headers",
        type=str,
        default="Content-Type,Accept,Authorization,X-Kafka-Acks,X-KBroker-Producer-Id,"
        "X-KBroker-Producer-Epoch,X-KBroker-Sequence",
        doc="CORS: request headers a preflight allows (with access.control.allow.origin set).",
    ),
    Setting(
        name="max.request.bytes",
        type=int,
        default=32 << 20,
        check=between(1024, 1 << 31),
        doc="Largest HTTP request body; larger bodies are refused with 413 before they are read.",
    ),
    Setting(
        name="produce.timeout.ms",
        type=int,
        default=30_000,
        check=between(1, 300_000),
        doc="Longest an acks=all produce waits for the ISR before 50310.",
    ),
    Setting(
        name="fetch.max.wait.ms",
        type=int,
        default=30_000,
        check=between(0, 300_000),
        doc="Largest timeout a fetch may long-poll for.",
    ),
    Setting(
        name="fetch.default.wait.ms",
        type=int,
        default=1000,
        check=between(0, 300_000),
        doc="Long-poll timeout of a fetch that names none.",
    ),
    Setting(
        name="fetch.default.max.bytes",
        type=int,
        default=1 << 20,
        check=between(1, 64 << 20),
        doc="max_bytes of a fetch that names none.",
    ),
    Setting(
        name="fetch.max.bytes",
        type=int,
        default=64 << 20,
        check=between(1, 1 << 30),
        doc="Largest max_bytes a fetch may ask for.",
    ),
    # Replication
    Setting(
        name="replica.lag.time.max.ms",
        type=int,
        default=10_000,
        check=at_least(100),
        doc="A follower not caught up for this long leaves the ISR.",
    ),
    Setting(
        name="replica.fetch.wait.max.ms",
        type=int,
        default=500,
        check=at_least(1),
        doc="How long a follower's fetch waits at the leader for new data.",
    ),
    Setting(
        name="replica.fetch.max.bytes",
        type=int,
        default=4 << 20,
        check=at_least(1024),
        doc="Bytes a follower fetches per partition per request.",
    ),
    Setting(
        name="replica.fetch.backoff.ms",
        type=int,
        default=200,
        check=at_least(0),
        doc="Pause after a failed replica fetch.",
    ),
    Setting(
        name="replica.high.watermark.checkpoint.interval.ms",
        type=int,
        default=5000,
        check=at_least(100),
        doc="How often high watermarks are checkpointed.",
    ),
    Setting(
        name="controlled.shutdown.enable",
        type=bool,
        default=True,
        doc="On SIGTERM, move leadership away before exiting.",
    ),
    Setting(
        name="controlled.shutdown.timeout.ms",
        type=int,
        default=30_000,
        check=at_least(0),
        doc="How long a controlled shutdown tries before exiting.",
    ),
    Setting(
        name="auto.leader.rebalance.enable",
        type=bool,
        default=True,
        doc="Periodically move leadership back to preferred replicas.",
    ),
    Setting(
        name="leader.imbalance.per.broker.percentage",
        type=int,
        default=10,
        check=between(0, 100),
        doc="Imbalance that triggers a preferred election.",
    ),
    Setting(
        name="leader.imbalance.check.interval.seconds",
        type=int,
        default=300,
        check=at_least(1),
        doc="How often leader imbalance is checked.",
    ),
    # Groups
    Setting(
        name="offsets.topic.num.partitions",
        type=int,
        default=50,
        check=between(1, 1000),
        doc="Partitions of __consumer_offsets (fixed once the topic exists).",
    ),
    Setting(
        name="offsets.topic.replication.factor",
        type=int,
        default=3,
        check=between(1, 64),
        doc="Replication factor of __consumer_offsets (capped by live brokers).",
    ),
    Setting(
        name="offsets.topic.segment.bytes",
        type=int,
        default=100 << 20,
        check=between(1024, INT_MAX),
        doc="Segment size of __consumer_offsets; the coordinator snapshots its state and "
        "deletes older segments once one rolls.",
    ),
    Setting(
        name="offsets.retention.minutes",
        type=int,
        default=10080,
        check=at_least(1),
        doc="Offsets of a group that has been empty this long are deleted.",
    ),
    Setting(
        name="offsets.retention.check.interval.ms",
        type=int,
        default=600_000,
        check=at_least(10),
        doc="How often expired offsets are removed and __consumer_offsets is snapshotted.",
    ),
    Setting(
        name="group.min.session.timeout.ms",
        type=int,
        default=6000,
        check=at_least(1),
        doc="Smallest session timeout a member may ask for.",
    ),
    Setting(
        name="group.max.session.timeout.ms",
        type=int,
        default=300_000,
        check=at_least(1),
        doc="Largest session timeout a member may ask for.",
    ),
    Setting(
        name="group.initial.rebalance.delay.ms",
        type=int,
        default=3000,
        check=at_least(0),
        doc="How long the first rebalance of an empty group waits for more members.",
    ),
    Setting(
        name="consumer.instance.timeout.ms",
        type=int,
        default=300_000,
        check=at_least(100),
        doc="An idle REST consumer instance is deleted after this long.",
    ),
    Setting(
        name="consumer.request.timeout.ms",
        type=int,
        default=1000,
        check=at_least(0),
        doc="Default and cap of a REST consumer's records timeout.",
    ),
)

_BROKER_BY_NAME: Final = {s.name: s for s in BROKER_SETTINGS}
_BROKER_BY_ALIAS: Final = {s.flag: s for s in BROKER_SETTINGS if s.flag}


def parse_zookeeper_connect(connect: str) -> tuple[str, str]:
    """Split ``HOST:PORT[,HOST:PORT...][/chroot]`` into (hosts, chroot). chroot may be "".

    The chroot must be a path ZooKeeper accepts: no empty, ``.`` or ``..`` components.
    """
    hosts, slash, chroot = connect.partition("/")
    if not hosts:
        raise ValueError("must name at least one HOST:PORT")
    for host in hosts.split(","):
        if _check_listen(host):
            raise ValueError(f"bad ZooKeeper address {host!r}: must be HOST:PORT")
    relative = {".", ".."} & set(chroot.split("/"))
    if slash and (
        not re.fullmatch(r"[A-Za-z0-9._/-]*", chroot) or "//" in "/" + chroot or relative
    ):
        raise ValueError(f"bad chroot /{chroot}")
    return hosts, ("/" + chroot.rstrip("/")) if slash and chroot.strip("/") else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """The broker's settings, one attribute per row of BROKER_SETTINGS (dots as underscores)."""

    broker_id: int
    zookeeper_connect: str
    listen: str
    advertised_url: str | None
    rack: str | None
    data_dir: str
    zookeeper_session_timeout_ms: int
    zookeeper_connection_timeout_ms: int
    num_partitions: int
    max_partitions_per_topic: int
    default_replication_factor: int
    auto_create_topics_enable: bool
    min_insync_replicas: int
    unclean_leader_election_enable: bool
    log_segment_bytes: int
    log_roll_ms: int
    log_retention_ms: int
    log_retention_bytes: int
    log_retention_check_interval_ms: int
    log_index_interval_bytes: int
    log_flush_interval_messages: int
    log_flush_interval_ms: int
    log_flush_offset_checkpoint_interval_ms: int
    message_max_bytes: int
    num_http_workers: int
    access_control_allow_origin: str
    access_control_allow_methods: str
    access_control_allow_headers: str
    max_request_bytes: int
    produce_timeout_ms: int
    fetch_max_wait_ms: int
    fetch_default_wait_ms: int
    fetch_default_max_bytes: int
    fetch_max_bytes: int
    replica_lag_time_max_ms: int
    replica_fetch_wait_max_ms: int
    replica_fetch_max_bytes: int
    replica_fetch_backoff_ms: int
    replica_high_watermark_checkpoint_interval_ms: int
    controlled_shutdown_enable: bool
    controlled_shutdown_timeout_ms: int
    auto_leader_rebalance_enable: bool
    leader_imbalance_per_broker_percentage: int
    leader_imbalance_check_interval_seconds: int
    offsets_topic_num_partitions: int
    offsets_topic_replication_factor: int
    offsets_topic_segment_bytes: int
    offsets_retention_minutes: int
    offsets_retention_check_interval_ms: int
    group_min_session_timeout_ms: int
    group_max_session_timeout_ms: int
    group_initial_rebalance_delay_ms: int
    consumer_instance_timeout_ms: int
    consumer_request_timeout_ms: int

    @property
    def url(self) -> str:
        """The URL this broker advertises."""
        return self.advertised_url or f"http://{self.listen}"

    @property
    def zookeeper_hosts(self) -> str:
        return parse_zookeeper_connect(self.zookeeper_connect)[0]

    @property
    def zookeeper_chroot(self) -> str:
        return parse_zookeeper_connect(self.zookeeper_connect)[1]

    @property
    def topic_defaults(self) -> TopicConfig:
        """Topic settings before any per-topic override."""
        return TopicConfig.from_broker(self)

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> BrokerConfig:
        """Build from setting names (or flag aliases) to raw values; missing ones default."""
        resolved: dict[str, Any] = {}
        for key, raw in values.items():
            setting = _BROKER_BY_NAME.get(key) or _BROKER_BY_ALIAS.get(key)
            if setting is None:
                raise ConfigError(f"unknown setting {key!r}")
            resolved[setting.name] = raw
        kwargs: dict[str, Any] = {}
        for setting in BROKER_SETTINGS:
            if setting.name in resolved:
                kwargs[setting.attr] = setting.convert(resolved[setting.name])
            elif setting.required:
                raise ConfigError(f"{setting.name} is required (--{setting.flag})")
            else:
                kwargs[setting.attr] = setting.default
        config = cls(**kwargs)
        if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms:
            raise ConfigError("group.min.session.timeout.ms exceeds group.max.session.timeout.ms")
        return config

    def replace(self, **changes: Any) -> BrokerConfig:
        return dataclasses.replace(self, **changes)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_broker_config(
    *,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: str | None = None,
) -> BrokerConfig:
    """Merge default < TOML file < environment < command line, then build and check."""
    values: dict[str, Any] = {}
    if config_file:
        try:
            with Path(config_file).open("rb") as fh:
                values.update(_flatten(tomllib.load(fh)))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
    values = _canonical(values)
    for setting in BROKER_SETTINGS:
        for env_name in setting.env_names:
            if env_name in env:
                values[setting.name] = env[env_name]
    values.update(_canonical({k: v for k, v in cli.items() if v is not None}))
    return BrokerConfig.build(values)


def _canonical(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flag aliases (``data-dir``) replaced by setting names (``data.dir``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        setting = _BROKER_BY_NAME.get(key) or _BROKER_BY_ALIAS.get(key)
        out[setting.name if setting else key] = value
    return out


# --------------------------------------------------------------------------- topic settings


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSetting:
    """One per-topic setting, its broker-level default and its check."""

    name: str
    type: type
    broker_default: str | None
    """BROKER_SETTINGS name whose value is the default, or None for ``default``."""
    default: Any
    doc: str
    check: Check | None = None

    def convert(self, raw: Any) -> Any:
        if isinstance(raw, str) and self.type is not str:
            raw = raw.strip()
        value = _convert(self.type, raw, self.name)
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{self.name}={raw!r}: {problem}")
        return value


TOPIC_SETTINGS: Final[tuple[TopicSetting, ...]] = (
    TopicSetting(
        name="cleanup.policy",
        type=str,
        broker_default=None,
        default="delete",
        check=one_of("delete", "compact", "compact,delete", "delete,compact"),
        doc="delete: drop old segments by retention; compact: keep the last record per key.",
    ),
    TopicSetting(
        name="retention.ms",
        type=int,
        broker_default="log.retention.ms",
        default=None,
        check=at_least(-1),
        doc="Delete segments whose newest record is older (-1: never).",
    ),
    TopicSetting(
        name="retention.bytes",
        type=int,
        broker_default="log.retention.bytes",
        default=None,
        check=at_least(-1),
        doc="Delete oldest segments while the partition is larger (-1: never).",
    ),
    TopicSetting(
        name="segment.bytes",
        type=int,
        broker_default="log.segment.bytes",
        default=None,
        check=between(1024, INT_MAX),
        doc="Segment size before a roll.",
    ),
    TopicSetting(
        name="segment.ms",
        type=int,
        broker_default="log.roll.ms",
        default=None,
        check=at_least(1),
        doc="Segment age before a roll.",
    ),
    TopicSetting(
        name="min.insync.replicas",
        type=int,
        broker_default="min.insync.replicas",
        default=None,
        check=at_least(1),
        doc="acks=all produce fails with 50304 when the ISR is smaller.",
    ),
    TopicSetting(
        name="unclean.leader.election.enable",
        type=bool,
        broker_default="unclean.leader.election.enable",
        default=None,
        doc="Allow a replica outside the ISR to lead: availability over durability; "
        "acknowledged records can be LOST.",
    ),
    TopicSetting(
        name="max.message.bytes",
        type=int,
        broker_default="message.max.bytes",
        default=None,
        check=between(64, INT_MAX),
        doc="Largest stored batch; larger requests are split, larger records refused.",
    ),
    TopicSetting(
        name="message.timestamp.type",
        type=str,
        broker_default=None,
        default="CreateTime",
        check=one_of("CreateTime", "LogAppendTime"),
        doc="CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock.",
    ),
    TopicSetting(
        name="flush.messages",
        type=int,
        broker_default="log.flush.interval.messages",
        default=None,
        check=at_least(1),
        doc="fsync after this many records; 1 = fsync before every acknowledgement.",
    ),
    TopicSetting(
        name="flush.ms",
        type=int,
        broker_default="log.flush.interval.ms",
        default=None,
        check=at_least(0),
        doc="fsync when unflushed data is this old.",
    ),
    TopicSetting(
        name="index.interval.bytes",
        type=int,
        broker_default="log.index.interval.bytes",
        default=None,
        check=at_least(0),
        doc="Bytes between offset-index entries.",
    ),
    TopicSetting(
        name="delete.retention.ms",
        type=int,
        broker_default=None,
        default=_DAY_MS,
        check=at_least(0),
        doc="How long compaction keeps tombstones.",
    ),
)

_TOPIC_BY_NAME: Final = {s.name: s for s in TOPIC_SETTINGS}


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicConfig:
    """Effective settings of one topic (broker defaults with the topic's overrides)."""

    cleanup_policy: str
    retention_ms: int
    retention_bytes: int
    segment_bytes: int
    segment_ms: int
    min_insync_replicas: int
    unclean_leader_election_enable: bool
    max_message_bytes: int
    message_timestamp_type: str
    flush_messages: int
    flush_ms: int
    index_interval_bytes: int
    delete_retention_ms: int

    @classmethod
    def from_broker(
        cls, broker: BrokerConfig, overrides: Mapping[str, str] | None = None
    ) -> TopicConfig:
        kwargs: dict[str, Any] = {}
        for setting in TOPIC_SETTINGS:
            attr = setting.name.replace(".", "_")
            if overrides and setting.name in overrides:
                kwargs[attr] = setting.convert(overrides[setting.name])
            elif setting.broker_default is not None:
                kwargs[attr] = getattr(broker, setting.broker_default.replace(".", "_"))
            else:
                kwargs[attr] = setting.default
        return cls(**kwargs)

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    def as_strings(self) -> dict[str, str]:
        """Every setting as Kafka shows it (strings; booleans lower-case)."""
        out = {}
        for setting in TOPIC_SETTINGS:
            value = kafka_string(getattr(self, setting.name.replace(".", "_")))
            assert value is not None  # no topic setting is nullable
            out[setting.name] = value
        return out


def kafka_string(value: Any) -> str | None:
    """A setting's value as Kafka's DescribeConfigs shows it: a string (booleans lower-case),
    or None for an unset nullable setting."""
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def validate_topic_configs(configs: Mapping[str, Any]) -> dict[str, str]:
    """Check per-topic overrides; returns them normalised to strings as stored in ZooKeeper.

    Raises BrokerError(INVALID_CONFIG) naming the first bad entry.
    """
    out: dict[str, str] = {}
    for name, raw in configs.items():
        setting = _TOPIC_BY_NAME.get(name)
        if setting is None:
            raise BrokerError(f"Unknown topic config name: {name}", ErrorCode.INVALID_CONFIG)
        if raw is None or isinstance(raw, dict | list):
            raise BrokerError(f"Invalid value for {name}: {raw!r}", ErrorCode.INVALID_CONFIG)
        try:
            value = setting.convert(raw)
        except ConfigError as exc:
            raise BrokerError(f"Invalid value for {exc}", ErrorCode.INVALID_CONFIG) from exc
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def topic_setting(name: str) -> TopicSetting | None:
    return _TOPIC_BY_NAME.get(name)
