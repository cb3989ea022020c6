"""kbroker.config: the settings table, precedence, conversion and topic configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbroker.config import (
    BROKER_SETTINGS,
    TOPIC_SETTINGS,
    BrokerConfig,
    ConfigError,
    TopicConfig,
    load_broker_config,
    parse_zookeeper_connect,
    validate_topic_configs,
)
from kbroker.errors import BrokerError, ErrorCode

REQUIRED = {"broker.id": "1", "zookeeper.connect": "zk:2181", "data.dir": "/var/kb"}
LONG_MAX = (1 << 63) - 1


def build(**values: Any) -> BrokerConfig:
    return BrokerConfig.build({**REQUIRED, **{k.replace("_", "."): v for k, v in values.items()}})


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kbroker.toml"
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------- the table


def test_table_and_dataclass_agree() -> None:
    names = [s.name for s in BROKER_SETTINGS]
    assert len(names) == len(set(names))
    assert set(BrokerConfig.__dataclass_fields__) == {s.attr for s in BROKER_SETTINGS}
    topic_attrs = {s.name.replace(".", "_") for s in TOPIC_SETTINGS}
    assert set(TopicConfig.__dataclass_fields__) == topic_attrs
    for setting in TOPIC_SETTINGS:
        if setting.broker_default is not None:
            assert setting.broker_default in names


def test_defaults() -> None:
    config = BrokerConfig.build(REQUIRED)
    for setting in BROKER_SETTINGS:
        if not setting.required:
            assert getattr(config, setting.attr) == setting.default, setting.name
    assert config.broker_id == 1
    assert config.data_dir == "/var/kb"
    assert config.replica_lag_time_max_ms == 10_000
    assert config.unclean_leader_election_enable is False
    assert config.url == "http://127.0.0.1:8080"


def test_every_default_passes_its_own_check() -> None:
    for setting in BROKER_SETTINGS:
        if setting.default is not None:
            assert setting.convert(setting.default) == setting.default, setting.name


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_required_settings(missing: str) -> None:
    values = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(ConfigError, match=rf"{missing} is required \(--"):
        BrokerConfig.build(values)


def test_unknown_setting_rejected() -> None:
    with pytest.raises(ConfigError, match=r"log\.retention\.hours"):
        BrokerConfig.build({**REQUIRED, "log.retention.hours": "1"})


def test_flag_aliases_in_build() -> None:
    config = BrokerConfig.build(
        {"broker-id": "3", "zookeeper": "a:1,b:2/kb", "data-dir": "/d", "advertised-url": None}
    )
    assert (config.broker_id, config.zookeeper_connect, config.data_dir) == (3, "a:1,b:2/kb", "/d")
    assert config.zookeeper_hosts == "a:1,b:2"
    assert config.zookeeper_chroot == "/kb"
    assert config.advertised_url is None


# ---------------------------------------------------------------------------- precedence


def test_precedence_default_toml_env_cli(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'broker.id = 1\nzookeeper.connect = "zk:1"\ndata-dir = "/toml"\n'
        "num.partitions = 2\nreplica.lag.time.max.ms = 2000\n"
        "[log]\nretention.ms = 111\nsegment.bytes = 4096\n",
    )
    env = {
        "KBROKER_LOG_RETENTION_MS": "222",
        "KBROKER_NUM_PARTITIONS": "3",
        "KBROKER_DATA_DIR": "/env",
        "UNRELATED": "x",
        "KBROKER_NOT_A_SETTING": "ignored",
    }
    cli: dict[str, Any] = {"log.retention.ms": "333", "data-dir": "/cli", "rack": None}
    config = load_broker_config(cli=cli, env=env, config_file=path)
    assert config.log_retention_ms == 333  # cli > env > toml
    assert config.data_dir == "/cli"  # flag alias on the command line
    assert config.num_partitions == 3  # env > toml
    assert config.log_segment_bytes == 4096  # toml (nested table) > default
    assert config.replica_lag_time_max_ms == 2000
    assert config.rack is None  # a flag left unset does not override anything
    assert config.listen == "127.0.0.1:8080"  # default


def test_env_names() -> None:
    env = {
        "KBROKER_BROKER_ID": "7",
        "KBROKER_ZOOKEEPER": "zk:2181/x",
        "KBROKER_DATA_DIR": "/data",
        "KBROKER_LOG_RETENTION_MS": "-1",
        "KBROKER_UNCLEAN_LEADER_ELECTION_ENABLE": "yes",
        "KBROKER_ADVERTISED_URL": "http://b7:9092",
    }
    config = load_broker_config(cli={}, env=env)
    assert config.broker_id == 7
    assert config.zookeeper_connect == "zk:2181/x"
    assert config.log_retention_ms == -1
    assert config.unclean_leader_election_enable is True
    assert config.url == "http://b7:9092"
    zk = next(s for s in BROKER_SETTINGS if s.name == "zookeeper.connect")
    assert zk.env_names == ("KBROKER_ZOOKEEPER_CONNECT", "KBROKER_ZOOKEEPER")
    data_dir = next(s for s in BROKER_SETTINGS if s.name == "data.dir")
    assert data_dir.env_names == ("KBROKER_DATA_DIR",)


def test_env_dotted_name_spelling() -> None:
    env = {**{f"KBROKER_{k.upper().replace('.', '_')}": v for k, v in REQUIRED.items()}}
    env["KBROKER_REPLICA_FETCH_WAIT_MAX_MS"] = "250"
    config = load_broker_config(cli={}, env=env)
    assert config.replica_fetch_wait_max_ms == 250
    assert config.zookeeper_connect == "zk:2181"


def test_cli_dotted_and_flag_names() -> None:
    cli = {"broker-id": 4, "zookeeper": "zk:1", "data.dir": "/d", "fetch.max.wait.ms": "10"}
    config = load_broker_config(cli=cli, env={})
    assert (config.broker_id, config.data_dir, config.fetch_max_wait_ms) == (4, "/d", 10)


def test_unknown_toml_key_rejected(tmp_path: Path) -> None:
    path = toml(tmp_path, "[log]\nretention.minutes = 5\n")
    with pytest.raises(ConfigError, match=r"log\.retention\.minutes"):
        load_broker_config(cli=REQUIRED, env={}, config_file=path)


def test_unreadable_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_broker_config(cli=REQUIRED, env={}, config_file=str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_broker_config(cli=REQUIRED, env={}, config_file=toml(tmp_path, "broker.id = = 1"))


def test_toml_typed_values(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        "auto.create.topics.enable = true\nmin.insync.replicas = 2\nrack = 'r1'\n",
    )
    config = load_broker_config(cli=REQUIRED, env={}, config_file=path)
    assert config.auto_create_topics_enable is True
    assert config.min_insync_replicas == 2
    assert config.rack == "r1"


# ---------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("broker.id", "-1"),
        ("broker.id", "x"),
        ("broker.id", "1.0"),
        ("broker.id", 1.5),
        ("broker.id", True),
        ("broker.id", str(1 << 31)),
        ("num.partitions", "0"),
        ("num.partitions", "+1"),
        ("num.partitions", "1_000"),
        ("num.partitions", "0x10"),
        ("num.partitions", ""),
        ("log.retention.ms", "-2"),
        ("log.retention.ms", "1e3"),
        ("log.retention.ms", str(LONG_MAX + 1)),
        ("log.retention.ms", "9" * 20),
        ("log.retention.ms", 1 << 70),
        ("log.flush.interval.messages", "١٢٣"),  # non-ASCII digits
        ("replica.lag.time.max.ms", "99"),
        ("leader.imbalance.per.broker.percentage", "101"),
        ("listen", "localhost"),
        ("listen", "h:70000"),
        ("listen", ":80"),
        ("advertised.url", "ftp://x"),
        ("advertised.url", "http://"),
        ("zookeeper.connect", "zk"),
        ("zookeeper.connect", "/chroot"),
        ("zookeeper.connect", "zk:2181,"),
        ("zookeeper.connect", "zk:2181//a"),
        ("auto.create.topics.enable", "maybe"),
        ("auto.create.topics.enable", "2"),
        ("controlled.shutdown.enable", ""),
        ("data.dir", ["a"]),
    ],
)
def test_bad_value_names_the_setting(name: str, raw: Any) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerConfig.build({**REQUIRED, name: raw})
    assert str(info.value).startswith(name)


def test_bad_env_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^log\.retention\.ms="):
        load_broker_config(cli=REQUIRED, env={"KBROKER_LOG_RETENTION_MS": "soon"})


def test_integer_forms() -> None:
    assert build(num_partitions=" 12 ").num_partitions == 12
    assert build(log_retention_ms="-1").log_retention_ms == -1
    assert build(log_flush_interval_messages=str(LONG_MAX)).log_flush_interval_messages == LONG_MAX
    assert build(broker_id=(1 << 31) - 1).broker_id == (1 << 31) - 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("1", True),
        ("on", True),
        (True, True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("0", False),
        ("off", False),
        (False, False),
    ],
)
def test_bool_parsing(raw: Any, expected: bool) -> None:
    config = BrokerConfig.build({**REQUIRED, "auto.create.topics.enable": raw})
    assert config.auto_create_topics_enable is expected


def test_nullable_and_non_nullable() -> None:
    assert BrokerConfig.build({**REQUIRED, "rack": None}).rack is None
    with pytest.raises(ConfigError, match="listen must be set"):
        BrokerConfig.build({**REQUIRED, "listen": None})


def test_session_timeout_bounds_cross_check() -> None:
    with pytest.raises(ConfigError, match=r"group\.min\.session\.timeout\.ms"):
        build(group_min_session_timeout_ms="5000", group_max_session_timeout_ms="4000")


def test_replace_keeps_frozen() -> None:
    config = BrokerConfig.build(REQUIRED)
    changed = config.replace(broker_id=9)
    assert (config.broker_id, changed.broker_id) == (1, 9)
    with pytest.raises(AttributeError):
        config.broker_id = 2  # type: ignore[misc]


# ------------------------------------------------------------------------ zookeeper connect


@pytest.mark.parametrize(
    ("connect", "hosts", "chroot"),
    [
        ("zk:2181", "zk:2181", ""),
        ("zk:2181/", "zk:2181", ""),
        ("zk:2181/kafka", "zk:2181", "/kafka"),
        ("zk:2181/kafka/", "zk:2181", "/kafka"),
        ("a:1,b:2,c:3/x/y-z.1_2", "a:1,b:2,c:3", "/x/y-z.1_2"),
        ("10.0.0.1:2181", "10.0.0.1:2181", ""),
        ("[::1]:2181/kb", "[::1]:2181", "/kb"),
    ],
)
def test_zookeeper_connect(connect: str, hosts: str, chroot: str) -> None:
    assert parse_zookeeper_connect(connect) == (hosts, chroot)
    config = BrokerConfig.build({**REQUIRED, "zookeeper.connect": connect})
    assert (config.zookeeper_hosts, config.zookeeper_chroot) == (hosts, chroot)


@pytest.mark.parametrize(
    "connect",
    [
        "",
        "/kafka",
        "zk",
        "zk:",
        "zk:port",
        "zk:65536",
        "a:1,,b:2",
        "a:1,",
        "zk:2181//a",
        "zk:2181/a//b",
        "zk:2181/a b",
        "zk:2181/a/../b",
        "zk:2181/./a",
        "zk:2181/..",
    ],
)
def test_bad_zookeeper_connect(connect: str) -> None:
    with pytest.raises(ValueError):
        parse_zookeeper_connect(connect)


# --------------------------------------------------------------------------- topic configs


def test_topic_config_from_broker_defaults() -> None:
    broker = build(
        log_retention_ms="5000",
        log_segment_bytes="2048",
        min_insync_replicas="2",
        unclean_leader_election_enable="true",
        message_max_bytes="1000",
        log_flush_interval_messages="1",
    )
    topic = TopicConfig.from_broker(broker)
    assert topic == broker.topic_defaults
    assert topic.retention_ms == 5000
    assert topic.segment_bytes == 2048
    assert topic.min_insync_replicas == 2
    assert topic.unclean_leader_election_enable is True
    assert topic.max_message_bytes == 1000
    assert topic.flush_messages == 1
    assert topic.cleanup_policy == "delete"
    assert topic.message_timestamp_type == "CreateTime"
    assert topic.delete_retention_ms == 24 * 3600 * 1000
    assert not topic.compact


def test_topic_config_overrides() -> None:
    broker = build(min_insync_replicas="2")
    topic = TopicConfig.from_broker(
        broker,
        {
            "min.insync.replicas": "1",
            "cleanup.policy": "compact,delete",
            "unclean.leader.election.enable": "true",
            "retention.ms": " -1 ",
            "message.timestamp.type": "LogAppendTime",
        },
    )
    assert topic.min_insync_replicas == 1
    assert topic.compact
    assert topic.unclean_leader_election_enable is True
    assert topic.retention_ms == -1
    assert topic.message_timestamp_type == "LogAppendTime"
    assert topic.segment_bytes == broker.log_segment_bytes
    strings = topic.as_strings()
    assert strings["unclean.leader.election.enable"] == "true"
    assert strings["retention.ms"] == "-1"
    assert set(strings) == {s.name for s in TOPIC_SETTINGS}
    # as_strings round-trips through from_broker.
    assert TopicConfig.from_broker(BrokerConfig.build(REQUIRED), strings) == topic


def test_topic_config_bad_override() -> None:
    with pytest.raises(ConfigError, match=r"segment\.bytes"):
        TopicConfig.from_broker(BrokerConfig.build(REQUIRED), {"segment.bytes": "10"})


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ({}, {}),
        ({"retention.ms": " 100 "}, {"retention.ms": "100"}),
        ({"retention.ms": 100}, {"retention.ms": "100"}),
        ({"retention.bytes": "-1"}, {"retention.bytes": "-1"}),
        ({"unclean.leader.election.enable": "TRUE"}, {"unclean.leader.election.enable": "true"}),
        ({"unclean.leader.election.enable": False}, {"unclean.leader.election.enable": "false"}),
        ({"cleanup.policy": "compact"}, {"cleanup.policy": "compact"}),
        ({"message.timestamp.type": "LogAppendTime"}, {"message.timestamp.type": "LogAppendTime"}),
        (
            {"min.insync.replicas": "2", "max.message.bytes": "64"},
            {"min.insync.replicas": "2", "max.message.bytes": "64"},
        ),
        ({"retention.ms": str(LONG_MAX)}, {"retention.ms": str(LONG_MAX)}),
    ],
)
def test_validate_topic_configs_normalises(
    configs: dict[str, Any], expected: dict[str, str]
) -> None:
    assert validate_topic_configs(configs) == expected


@pytest.mark.parametrize(
    "configs",
    [
        {"retention.hours": "1"},
        {"Retention.ms": "1"},
        {"retention.ms": "soon"},
        {"retention.ms": "-2"},
        {"retention.ms": None},
        {"retention.ms": [1]},
        {"retention.ms": {"v": 1}},
        {"retention.ms": True},
        {"retention.ms": 1.0},
        {"retention.ms": str(LONG_MAX + 1)},
        {"segment.bytes": "1023"},
        {"segment.ms": "0"},
        {"min.insync.replicas": "0"},
        {"max.message.bytes": "63"},
        {"flush.messages": "0"},
        {"cleanup.policy": "COMPACT"},
        {"cleanup.policy": "none"},
        {"cleanup.policy": True},
        {"message.timestamp.type": "createtime"},
        {"unclean.leader.election.enable": "maybe"},
        {"retention.ms": "1", "delete.retention.ms": "-5"},
    ],
)
def test_validate_topic_configs_rejects(configs: dict[str, Any]) -> None:
    with pytest.raises(BrokerError) as info:
        validate_topic_configs(configs)
    assert info.value.code == ErrorCode.INVALID_CONFIG
    bad = next(iter(configs)) if len(configs) == 1 else "delete.retention.ms"
    assert bad in info.value.message
