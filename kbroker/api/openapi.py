"""``GET /openapi.json``: an OpenAPI 3.0 description built from the code's own limits.

The name patterns, integer bounds and error codes below are read from the same constants the
handlers enforce (kbroker.api.params, kclient.protocol, the broker configuration), and a test
checks that every route of the application is described here and vice versa.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from kbroker import __version__
from kbroker.api.errors import json_response
from kbroker.api.fetch import MAX_RECORDS
from kbroker.api.media import MEDIA_BINARY_V1, MEDIA_JSON_V1
from kbroker.api.params import MAX_OFFSET, TOPIC_NAME
from kbroker.api.services import SERVICES
from kbroker.config import BrokerConfig
from kbroker.records import MAX_TIMESTAMP
from kclient.protocol import (
    MAX_PARTITION,
    MEDIA_BATCHES,
    MEDIA_BINARY_V2,
    MEDIA_JSON,
    MEDIA_JSON_V2,
    MEDIA_V2,
    ErrorCode,
    error_spec,
)

__all__ = ["build_spec", "routes"]

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_responses(*codes: ErrorCode) -> dict[str, Any]:
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(error_spec(code).status, []).append(code)
    return {
        str(status): {
            "description": "; ".join(
                f"{int(c)} {c.name}: {error_spec(c).description}" for c in group
            ),
            "content": {MEDIA_JSON: {"schema": _ref("Error")}},
        }
        for status, group in sorted(by_status.items())
    }


_ALWAYS: Final = (ErrorCode.INTERNAL_ERROR,)
_TOPIC_ERRORS: Final = (ErrorCode.UNKNOWN_TOPIC, *_ALWAYS)
_PARTITION_ERRORS: Final = (ErrorCode.UNKNOWN_TOPIC, ErrorCode.UNKNOWN_PARTITION, *_ALWAYS)
_BODY_ERRORS: Final = (
    ErrorCode.MALFORMED_REQUEST,
    ErrorCode.REQUEST_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.INVALID_PAYLOAD,
)
#: What any topic administration can answer (ZooKeeper and the controller's wait).
_ADMIN_ERRORS: Final = (
    ErrorCode.INVALID_CONFIG,
    ErrorCode.ZOOKEEPER_UNAVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT,
)
#: What creating a topic can answer besides body errors (v3's create and Strimzi's).
_CREATE_TOPIC_ERRORS: Final = (
    *_ADMIN_ERRORS,
    ErrorCode.TOPIC_ALREADY_EXISTS,
    ErrorCode.INVALID_TOPIC_NAME,
    ErrorCode.INVALID_PARTITIONS,
    ErrorCode.INVALID_REPLICATION_FACTOR,
)
_FORWARD_ERRORS: Final = (
    ErrorCode.NOT_LEADER,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.BROKER_NOT_AVAILABLE,
)


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query_param(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_TOPIC: Final = _path_param(
    "topic", {"type": "string", "pattern": f"^{TOPIC_NAME.pattern}$"}, "Topic name."
)
_PARTITION: Final = _path_param(
    "partition", {"type": "integer", "minimum": 0, "maximum": MAX_PARTITION}, "Partition."
)
_CLUSTER: Final = _path_param("cluster_id", {"type": "string"}, "Cluster id (GET /v3/clusters).")
_CONFIG_NAME: Final = _path_param("name", {"type": "string"}, "Topic config name.")
_BROKER: Final = _path_param("broker_id", {"type": "integer", "minimum": 0}, "Broker id.")
_BROKER_CONFIG_NAME: Final = _path_param("name", {"type": "string"}, "Broker setting name.")
_TOPIC_OR_ALL: Final = _path_param(
    "topic", {"type": "string", "pattern": f"^{TOPIC_NAME.pattern}$"}, "Topic name, or - for all."
)
_PARTITION_OR_ALL: Final = _path_param(
    "partition", {"type": "string", "pattern": "^(-|[0-9]{1,5})$"}, "Partition, or - for all."
)


def _json(schema: Schema, *media: str) -> dict[str, Any]:
    return {m: {"schema": schema} for m in (media or (MEDIA_JSON,))}


def _ok(
    description: str, schema: Schema | None, *media: str, status: str = "200"
) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = _json(schema, *media)
    return {status: body}


def _op(
    summary: str,
    params: list[Schema],
    responses: dict[str, Any],
    errors: tuple[ErrorCode, ...],
    *,
    body: dict[str, Any] | None = None,
    tag: str = "v2",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": {**responses, **_error_responses(*errors)},
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _schemas(config: BrokerConfig) -> dict[str, Schema]:
    integer = {"type": "integer"}
    nullable_int = {"type": "integer", "nullable": True}
    header = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "value": {"type": "string", "format": "byte", "nullable": True},
        },
        "required": ["key"],
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error_code", "message"],
            "properties": {
                "error_code": integer,
                "message": {"type": "string"},
                "retriable": {"type": "boolean"},
                "after_append": {
                    "type": "boolean",
                    "description": "The records were written before the failure.",
                },
            },
        },
        "ProduceRecord": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "key": {"description": "JSON document (json format) or base64 (binary format)."},
                "value": {"description": "JSON document (json format) or base64 (binary format)."},
                "partition": {"type": "integer", "minimum": 0, "maximum": MAX_PARTITION},
                "timestamp": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_TIMESTAMP,
                    "description": "Milliseconds since the epoch (extension).",
                },
                "headers": {"type": "array", "items": header},
            },
        },
        "ProduceRequest": {
            "type": "object",
            "required": ["records"],
            "properties": {
                "records": {"type": "array", "items": _ref("ProduceRecord")},
                "key_schema": {"nullable": True},
                "key_schema_id": {"nullable": True},
                "value_schema": {"nullable": True},
                "value_schema_id": {"nullable": True},
            },
        },
        "ProduceResponse": {
            "type": "object",
            "properties": {
                "offsets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "partition": nullable_int,
                            "offset": nullable_int,
                            "error_code": nullable_int,
                            "error": {"type": "string", "nullable": True},
                        },
                    },
                },
                "key_schema_id": nullable_int,
                "value_schema_id": nullable_int,
            },
        },
        "Record": {
            "type": "object",
            "properties": {
                "topic": {"type": "string"},
                "partition": integer,
                "offset": integer,
                "timestamp": integer,
                "key": {},
                "value": {},
                "headers": {"type": "array", "items": header},
            },
        },
        "Offsets": {
            "type": "object",
            "properties": {
                "beginning_offset": integer,
                "end_offset": integer,
                "timestamp": integer,
                "offset": nullable_int,
                "record_timestamp": nullable_int,
            },
        },
        "Partition": {
            "type": "object",
            "properties": {
                "partition": integer,
                "leader": nullable_int,
                "replicas": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "broker": integer,
                            "leader": {"type": "boolean"},
                            "in_sync": {"type": "boolean"},
                        },
                    },
                },
                "leader_epoch": integer,
                "isr": {"type": "array", "items": integer},
                "under_replicated": {"type": "boolean"},
                "offline": {"type": "boolean"},
                "log_start_offset": nullable_int,
                "high_watermark": nullable_int,
                "log_end_offset": nullable_int,
            },
        },
        "Topic": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "configs": {"type": "object", "additionalProperties": {"type": "string"}},
                "partitions": {"type": "array", "items": _ref("Partition")},
            },
        },
        "V3Resource": {
            "type": "object",
            "properties": {"kind": {"type": "string"}, "metadata": {"type": "object"}},
            "additionalProperties": True,
        },
        "V3List": {
            "type": "object",
            "properties": {
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "data": {"type": "array", "items": _ref("V3Resource")},
            },
        },
        "NewTopic": {
            "type": "object",
            "required": ["topic_name"],
            "additionalProperties": False,
            "properties": {
                "topic_name": {"type": "string", "pattern": f"^{TOPIC_NAME.pattern}$"},
                "partitions_count": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": config.max_partitions_per_topic,
                },
                "replication_factor": {"type": "integer", "minimum": 1, "maximum": 64},
            },
        },
        "CreateTopic": {
            "type": "object",
            "required": ["topic_name"],
            "additionalProperties": False,
            "properties": {
                "topic_name": {"type": "string", "pattern": f"^{TOPIC_NAME.pattern}$"},
                "partitions_count": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": config.max_partitions_per_topic,
                },
                "replication_factor": {"type": "integer", "minimum": 1, "maximum": 64},
                "replicas_assignments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "partition_id": integer,
                            "broker_ids": {"type": "array", "items": integer},
                        },
                    },
                },
                "configs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "value": {}},
                    },
                },
                "validate_only": {"type": "boolean"},
            },
        },
        "ConfigValue": {"type": "object", "required": ["value"], "properties": {"value": {}}},
        "AlterConfigs": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "value": {},
                            "operation": {"type": "string", "enum": ["SET", "DELETE"]},
                        },
                    },
                }
            },
        },
        "PatchTopic": {
            "type": "object",
            "properties": {
                "partitions_count": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": config.max_partitions_per_topic,
                }
            },
        },
    }


def _produce_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": _json(
            _ref("ProduceRequest"), MEDIA_JSON_V2, MEDIA_BINARY_V2, MEDIA_V2, MEDIA_JSON
        ),
    }


def _v2_paths(config: BrokerConfig) -> dict[str, Any]:
    produce_errors = (
        *_PARTITION_ERRORS,
        *_BODY_ERRORS,
        ErrorCode.JSON_CONVERSION,
        ErrorCode.RECORD_TOO_LARGE,
        ErrorCode.INVALID_PARAMETER,
    )
    fetch_params = [
        _TOPIC,
        _PARTITION,
        _query_param(
            "offset",
            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            "First offset to return.",
            required=True,
        ),
        _query_param(
            "max_bytes",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": config.fetch_max_bytes,
                "default": config.fetch_default_max_bytes,
            },
            "Bound on the stored size of the records returned (at least one).",
        ),
        _query_param(
            "max_records",
            {"type": "integer", "minimum": 1, "maximum": MAX_RECORDS},
            "Most records to return.",
        ),
        _query_param(
            "timeout",
            {
                "type": "integer",
                "minimum": 0,
                "maximum": config.fetch_max_wait_ms,
                "default": config.fetch_default_wait_ms,
            },
            "Milliseconds to wait while no record is available.",
        ),
    ]
    acks = _query_param(
        "acks",
        {"type": "string", "enum": ["0", "1", "-1", "all"]},
        "Acknowledgement level (default all); also the X-Kafka-Acks header.",
    )
    no_metadata = _query_param(
        "async",
        {"type": "boolean", "default": False},
        "Strimzi's async: 204 with no body instead of the offsets when every record was "
        "produced (durability still follows acks).",
    )
    produced = {
        **_ok("Offsets", _ref("ProduceResponse")),
        **_ok("Produced (async)", None, status="204"),
    }
    records = {"type": "array", "items": _ref("Record")}
    return {
        "/": {"get": _op("Liveness", [], _ok("Empty object", {"type": "object"}), _ALWAYS)},
        "/healthy": {"get": _op("Liveness (Strimzi's path)", [], _ok("Alive", None), _ALWAYS)},
        "/ready": {
            "get": _op(
                "Readiness: registered, not fenced, not stopping (kbroker extension)",
                [],
                _ok("Ready", {"type": "object"}),
                (ErrorCode.BROKER_NOT_AVAILABLE, *_ALWAYS),
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics, text format 0.0.4 (kbroker extension)",
                [],
                _ok("Metrics", {"type": "string"}, "text/plain"),
                _ALWAYS,
            )
        },
        "/brokers": {
            "get": _op(
                "Live broker ids",
                [],
                _ok(
                    "Broker ids",
                    {
                        "type": "object",
                        "properties": {"brokers": {"type": "array", "items": {"type": "integer"}}},
                    },
                ),
                _ALWAYS,
            )
        },
        "/topics": {
            "get": _op(
                "Topic names",
                [],
                _ok("Names", {"type": "array", "items": {"type": "string"}}),
                _ALWAYS,
            )
        },
        "/topics/{topic}": {
            "get": _op("Describe a topic", [_TOPIC], _ok("Topic", _ref("Topic")), _TOPIC_ERRORS),
            "post": _op(
                "Produce records (partitioned by key, or sticky)",
                [_TOPIC, acks, no_metadata],
                produced,
                produce_errors,
                body=_produce_body(),
            ),
        },
        "/topics/{topic}/partitions": {
            "get": _op(
                "Describe partitions",
                [_TOPIC],
                _ok("Partitions", {"type": "array", "items": _ref("Partition")}),
                _TOPIC_ERRORS,
            )
        },
        "/topics/{topic}/partitions/{partition}": {
            "get": _op(
                "Describe a partition",
                [_TOPIC, _PARTITION],
                _ok("Partition", _ref("Partition")),
                _PARTITION_ERRORS,
            ),
            "post": _op(
                "Produce records to a partition",
                [_TOPIC, _PARTITION, acks, no_metadata],
                produced,
                produce_errors,
                body=_produce_body(),
            ),
        },
        "/topics/{topic}/partitions/{partition}/offsets": {
            "get": _op(
                "Beginning and end offsets; first offset at or after a timestamp",
                [
                    _TOPIC,
                    _PARTITION,
                    _query_param(
                        "timestamp",
                        {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP},
                        "Look up the first offset whose timestamp is at or after this.",
                    ),
                ],
                _ok("Offsets", _ref("Offsets")),
                (*_PARTITION_ERRORS, ErrorCode.INVALID_PARAMETER, *_FORWARD_ERRORS),
            )
        },
        "/topics/{topic}/partitions/{partition}/records": {
            "get": _op(
                "Fetch records from an offset (stateless, long-polls while none)",
                fetch_params,
                _ok("Records", records, MEDIA_JSON_V2, MEDIA_BINARY_V2),
                (
                    *_PARTITION_ERRORS,
                    ErrorCode.INVALID_OFFSET,
                    ErrorCode.INVALID_PARAMETER,
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    ErrorCode.NOT_ACCEPTABLE,
                    ErrorCode.JSON_CONVERSION,
                    *_FORWARD_ERRORS,
                ),
            )
        },
        "/topics/{topic}/partitions/{partition}/messages": {
            "get": _op(
                "REST Proxy v1: records from an offset (answers at once; binary by default)",
                [
                    *fetch_params[:3],
                    _query_param(
                        "count",
                        {"type": "integer", "minimum": 1, "maximum": MAX_RECORDS, "default": 1},
                        "Most records to return.",
                    ),
                ],
                _ok("Records", records, MEDIA_JSON_V1, MEDIA_BINARY_V1),
                (
                    *_PARTITION_ERRORS,
                    ErrorCode.INVALID_OFFSET,
                    ErrorCode.INVALID_PARAMETER,
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    ErrorCode.NOT_ACCEPTABLE,
                    ErrorCode.JSON_CONVERSION,
                    *_FORWARD_ERRORS,
                ),
            )
        },
        "/topics/{topic}/partitions/{partition}/batches": {
            "get": _op(
                "Fetch stored record batches from an offset (kbroker extension)",
                fetch_params,
                _ok(
                    "Raw batches; format in kclient.protocol",
                    {"type": "string", "format": "binary"},
                    MEDIA_BATCHES,
                ),
                (
                    *_PARTITION_ERRORS,
                    ErrorCode.INVALID_OFFSET,
                    ErrorCode.INVALID_PARAMETER,
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    *_FORWARD_ERRORS,
                ),
            )
        },
        "/producers": {
            "post": _op(
                "A producer id for idempotent produce (or the next epoch of one)",
                [],
                _ok(
                    "Producer id and epoch",
                    {
                        "type": "object",
                        "properties": {
                            "producer_id": {"type": "integer"},
                            "producer_epoch": {"type": "integer"},
                        },
                    },
                ),
                (*_BODY_ERRORS, ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.KAFKA_ERROR, *_ALWAYS),
                body={"required": False, "content": _json({"type": "object"})},
            )
        },
        **{
            path: {"get": _op("This document", [], _ok("OpenAPI 3.0", {"type": "object"}), _ALWAYS)}
            for path in ("/openapi.json", "/openapi", "/openapi/v3")
        },
        "/admin/topics": {
            "post": _op(
                "Create a topic (Strimzi's bridge): 201 with no body",
                [],
                _ok("Created", None, status="201"),
                (*_CREATE_TOPIC_ERRORS, *_BODY_ERRORS, *_ALWAYS),
                body=_body("NewTopic"),
            )
        },
    }


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": _json(_ref(name))}


def _v3_paths() -> dict[str, Any]:
    lst = _ok("Collection", _ref("V3List"))
    one = _ok("Resource", _ref("V3Resource"))
    none = _ok("Done", None, status="204")
    c, t = "/v3/clusters/{cluster_id}", "/v3/clusters/{cluster_id}/topics/{topic}"
    cl = (ErrorCode.UNKNOWN_CLUSTER, *_ALWAYS)
    tp = (ErrorCode.UNKNOWN_CLUSTER, *_TOPIC_ERRORS)
    pa = (ErrorCode.UNKNOWN_CLUSTER, *_PARTITION_ERRORS)
    admin = (*_ADMIN_ERRORS, *_BODY_ERRORS)
    created = _ok("Created", _ref("V3Resource"), status="201")
    return {
        "/v3/clusters": {"get": _op("Clusters", [], lst, _ALWAYS, tag="v3")},
        c: {"get": _op("Cluster", [_CLUSTER], one, cl, tag="v3")},
        c + "/brokers": {"get": _op("Brokers", [_CLUSTER], lst, cl, tag="v3")},
        c + "/brokers/{broker_id}": {
            "get": _op(
                "Broker", [_CLUSTER, _BROKER], one, (*cl, ErrorCode.UNKNOWN_BROKER), tag="v3"
            )
        },
        c + "/brokers/{broker_id}/configs": {
            "get": _op(
                "A broker's settings (read-only; answered by that broker)",
                [_CLUSTER, _BROKER],
                lst,
                (*cl, ErrorCode.UNKNOWN_BROKER, *_FORWARD_ERRORS),
                tag="v3",
            )
        },
        c + "/brokers/{broker_id}/configs/{name}": {
            "get": _op(
                "One broker setting",
                [_CLUSTER, _BROKER, _BROKER_CONFIG_NAME],
                one,
                (*cl, ErrorCode.UNKNOWN_BROKER, ErrorCode.UNKNOWN_CONFIG, *_FORWARD_ERRORS),
                tag="v3",
            )
        },
        c + "/brokers/{broker_id}/partition-replicas": {
            "get": _op(
                "Replicas a broker holds",
                [_CLUSTER, _BROKER],
                lst,
                (*cl, ErrorCode.UNKNOWN_BROKER),
                tag="v3",
            )
        },
        c + "/broker-configs": {
            "get": _op("Dynamic cluster-wide broker settings (none)", [_CLUSTER], lst, cl, tag="v3")
        },
        c + "/acls": {
            "get": _op("ACLs (none: kbroker has no authorization)", [_CLUSTER], lst, cl, tag="v3")
        },
        c + "/topics": {
            "get": _op("Topics", [_CLUSTER], lst, cl, tag="v3"),
            "post": _op(
                "Create a topic",
                [_CLUSTER],
                {**created, **_ok("Validated", None)},
                (*cl, *_CREATE_TOPIC_ERRORS, *_BODY_ERRORS),
                body=_body("CreateTopic"),
                tag="v3",
            ),
        },
        t: {
            "get": _op("Topic", [_CLUSTER, _TOPIC], one, tp, tag="v3"),
            "patch": _op(
                "Add partitions",
                [_CLUSTER, _TOPIC],
                one,
                (*tp, *admin, ErrorCode.INVALID_PARTITIONS),
                body=_body("PatchTopic"),
                tag="v3",
            ),
            "delete": _op("Delete a topic", [_CLUSTER, _TOPIC], none, (*tp, *admin), tag="v3"),
        },
        t + "/records": {
            "post": _op(
                "Produce records: one JSON object per record, one report per line "
                "(streamed for a chunked request)",
                [_CLUSTER, _TOPIC],
                _ok("Delivery reports, one JSON object per line", {"type": "object"}),
                (
                    *pa,
                    *_BODY_ERRORS,
                    ErrorCode.JSON_CONVERSION,
                    ErrorCode.RECORD_TOO_LARGE,
                    ErrorCode.INVALID_PARAMETER,
                ),
                body=_json_body({"type": "object", "additionalProperties": True}),
                tag="v3",
            )
        },
        t + "/records:batch": {
            "post": _op(
                "Produce a batch of records with ids: 207 with successes and failures",
                [_CLUSTER, _TOPIC],
                _ok("Successes and failures, by entry id", {"type": "object"}, status="207"),
                (*pa, *_BODY_ERRORS, ErrorCode.INVALID_PRODUCE_BATCH, ErrorCode.INVALID_PARAMETER),
                body=_json_body({"type": "object", "additionalProperties": True}),
                tag="v3",
            )
        },
        t + "/configs": {"get": _op("Topic configs", [_CLUSTER, _TOPIC], lst, tp, tag="v3")},
        t + "/configs:alter": {
            "post": _op(
                "Set or delete topic configs",
                [_CLUSTER, _TOPIC],
                none,
                (*tp, *admin),
                body=_body("AlterConfigs"),
                tag="v3",
            )
        },
        t + "/configs/{name}": {
            "get": _op(
                "Topic config",
                [_CLUSTER, _TOPIC, _CONFIG_NAME],
                one,
                (*tp, ErrorCode.UNKNOWN_CONFIG),
                tag="v3",
            ),
            "put": _op(
                "Set a topic config",
                [_CLUSTER, _TOPIC, _CONFIG_NAME],
                none,
                (*tp, *admin),
                body=_body("ConfigValue"),
                tag="v3",
            ),
            "delete": _op(
                "Reset a topic config",
                [_CLUSTER, _TOPIC, _CONFIG_NAME],
                none,
                (*tp, *admin, ErrorCode.UNKNOWN_CONFIG),
                tag="v3",
            ),
        },
        c + "/partitions:elect-preferred-leaders": {
            "post": _op(
                "Move leadership back to preferred replicas (kbroker extension)",
                [_CLUSTER],
                _ok("How many partitions were queued", {"type": "object"}),
                (
                    *cl,
                    ErrorCode.NOT_CONTROLLER,
                    ErrorCode.UNKNOWN_TOPIC,
                    ErrorCode.UNKNOWN_PARTITION,
                    *_BODY_ERRORS,
                ),
                body={"required": False, "content": _json({"type": "object"})},
                tag="v3",
            )
        },
        t + "/partitions": {"get": _op("Partitions", [_CLUSTER, _TOPIC], lst, tp, tag="v3")},
        t + "/partitions/{partition}": {
            "get": _op("Partition", [_CLUSTER, _TOPIC, _PARTITION], one, pa, tag="v3")
        },
        t + "/partitions/{partition}/replicas": {
            "get": _op("Replicas", [_CLUSTER, _TOPIC, _PARTITION], lst, pa, tag="v3")
        },
        t + "/partitions/{partition}/replicas/{broker_id}": {
            "get": _op(
                "One replica",
                [_CLUSTER, _TOPIC, _PARTITION, _BROKER],
                one,
                (*pa, ErrorCode.UNKNOWN_BROKER, ErrorCode.NOT_FOUND),
                tag="v3",
            )
        },
        t + "/partitions/{partition}/reassignment": {
            "get": _op(
                "Reassignments in progress: none (topics/-/partitions/-: all; partitions/-: a "
                "topic's; one partition: 404)",
                [_CLUSTER, _TOPIC_OR_ALL, _PARTITION_OR_ALL],
                lst,
                (*pa, ErrorCode.NOT_FOUND),
                tag="v3",
            )
        },
    }


_GROUP: Final = _path_param(
    "group", {"type": "string", "minLength": 1, "maxLength": 255}, "Consumer group id."
)
_MEMBER: Final = _path_param("member", {"type": "string"}, "Member id (from the join).")
_CONSUMER: Final = _path_param("consumer", {"type": "string"}, "Member id.")
_INSTANCE: Final = _path_param(
    "instance",
    {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,255}$"},
    "REST consumer instance name.",
)
_COORD: Final = (
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.INVALID_GROUP_ID,
    *_BODY_ERRORS,
    *_ALWAYS,
)
_FENCING: Final = (
    ErrorCode.UNKNOWN_MEMBER_ID,
    ErrorCode.ILLEGAL_GENERATION,
    ErrorCode.REBALANCE_IN_PROGRESS,
    ErrorCode.FENCED_INSTANCE_ID,
)


def _json_body(schema: Schema, *media: str) -> dict[str, Any]:
    return {"required": False, "content": _json(schema, *media)}


def _group_paths() -> dict[str, Any]:
    obj: Schema = {"type": "object", "additionalProperties": True}
    tag = "groups"
    g = "/groups/{group}"
    return {
        "/groups": {"get": _op("All consumer groups", [], _ok("Groups", obj), _ALWAYS, tag=tag)},
        g: {
            "get": _op(
                "Describe a group",
                [_GROUP],
                _ok("Group", obj),
                (*_COORD, ErrorCode.UNKNOWN_GROUP),
                tag=tag,
            ),
            "delete": _op(
                "Delete an empty group",
                [_GROUP],
                _ok("Deleted", None, status="204"),
                (*_COORD, ErrorCode.UNKNOWN_GROUP, ErrorCode.GROUP_NOT_EMPTY),
                tag=tag,
            ),
        },
        g + "/members": {
            "post": _op(
                "Join or rejoin; answers when the rebalance completes",
                [_GROUP],
                _ok("Membership and assignment", obj),
                (
                    *_COORD,
                    *_FENCING,
                    ErrorCode.INVALID_SESSION_TIMEOUT,
                    ErrorCode.INVALID_CONSUMER_CONFIG,
                ),
                body=_json_body(obj),
                tag=tag,
            )
        },
        g + "/members/{member}/heartbeat": {
            "post": _op(
                "Heartbeat",
                [_GROUP, _MEMBER],
                _ok("Group state", obj),
                (*_COORD, *_FENCING),
                body=_json_body(obj),
                tag=tag,
            )
        },
        g + "/members/{member}": {
            "delete": _op(
                "Leave the group",
                [_GROUP, _MEMBER],
                _ok("Left", None, status="204"),
                (*_COORD, ErrorCode.UNKNOWN_MEMBER_ID),
                tag=tag,
            )
        },
        g + "/offsets": {
            "post": _op(
                "Commit offsets (next offsets to consume)",
                [_GROUP],
                _ok("Committed", obj),
                (
                    *_COORD,
                    *_FENCING,
                    ErrorCode.INVALID_OFFSET,
                    ErrorCode.UNKNOWN_TOPIC,
                    ErrorCode.UNKNOWN_PARTITION,
                ),
                body=_json_body(obj),
                tag=tag,
            ),
            "get": _op(
                "Committed offsets",
                [_GROUP, _query_param("topic", {"type": "string"}, "Only this topic.")],
                _ok("Offsets", obj),
                _COORD,
                tag=tag,
            ),
        },
        g + "/offsets:reset": {
            "post": _op(
                "Reset the offsets of an empty group",
                [_GROUP],
                _ok("New offsets", obj),
                (
                    *_COORD,
                    ErrorCode.GROUP_NOT_EMPTY,
                    ErrorCode.UNKNOWN_TOPIC,
                    ErrorCode.UNKNOWN_PARTITION,
                    ErrorCode.INVALID_OFFSET,
                    ErrorCode.INVALID_PARAMETER,
                ),
                body=_json_body(obj),
                tag=tag,
            )
        },
    }


def _consumer_paths() -> dict[str, Any]:
    obj: Schema = {"type": "object", "additionalProperties": True}
    tag = "consumers"
    i = "/consumers/{group}/instances/{instance}"
    base = (*_COORD, ErrorCode.UNKNOWN_CONSUMER_INSTANCE)
    state = (*base, ErrorCode.ILLEGAL_STATE, ErrorCode.UNKNOWN_TOPIC, ErrorCode.UNKNOWN_PARTITION)
    done = _ok("Done", None, status="204")
    records = {"type": "array", "items": _ref("Record")}
    read_params = [
        _query_param(
            "timeout",
            {"type": "integer", "minimum": 0},
            "Milliseconds to wait while no record is available.",
        ),
        _query_param(
            "max_bytes",
            {"type": "integer", "minimum": 1, "maximum": 64 << 20},
            "Bound on the records' size.",
        ),
    ]
    read_errors = (
        *state,
        ErrorCode.NOT_ACCEPTABLE,
        ErrorCode.INVALID_PARAMETER,
        ErrorCode.JSON_CONVERSION,
    )
    return {
        "/consumers/{group}": {
            "post": _op(
                "Create a consumer instance",
                [_GROUP],
                _ok("Instance id and base URI", obj),
                (*_COORD, ErrorCode.CONSUMER_ALREADY_EXISTS, ErrorCode.INVALID_CONSUMER_CONFIG),
                body=_json_body(obj, MEDIA_V2, MEDIA_JSON),
                tag=tag,
            )
        },
        i: {"delete": _op("Delete the instance", [_GROUP, _INSTANCE], done, base, tag=tag)},
        i + "/subscription": {
            "post": _op(
                "Subscribe",
                [_GROUP, _INSTANCE],
                done,
                (*state, ErrorCode.ALREADY_SUBSCRIBED, *_FENCING),
                body=_json_body(obj),
                tag=tag,
            ),
            "get": _op("Subscription", [_GROUP, _INSTANCE], _ok("Topics", obj), base, tag=tag),
            "delete": _op("Unsubscribe", [_GROUP, _INSTANCE], done, base, tag=tag),
        },
        i + "/assignments": {
            "post": _op(
                "Assign partitions manually",
                [_GROUP, _INSTANCE],
                done,
                state,
                body=_json_body(obj),
                tag=tag,
            ),
            "get": _op(
                "Assigned partitions", [_GROUP, _INSTANCE], _ok("Partitions", obj), base, tag=tag
            ),
        },
        i + "/positions": {
            "post": _op(
                "Seek",
                [_GROUP, _INSTANCE],
                done,
                (*state, ErrorCode.INVALID_OFFSET),
                body=_json_body(obj),
                tag=tag,
            )
        },
        i + "/positions/{edge}": {
            "post": _op(
                "Seek to the beginning or the end",
                [
                    _GROUP,
                    _INSTANCE,
                    _path_param("edge", {"type": "string", "enum": ["beginning", "end"]}, "Edge."),
                ],
                done,
                state,
                body=_json_body(obj),
                tag=tag,
            )
        },
        i + "/records": {
            "get": _op(
                "Records of the assigned partitions (answers as soon as there are some)",
                [_GROUP, _INSTANCE, *read_params],
                _ok("Records", records, MEDIA_JSON_V2, MEDIA_BINARY_V2),
                read_errors,
                tag=tag,
            )
        },
        i + "/topics/{topic}": {
            "get": _op(
                "REST Proxy v1: records of one topic (the first read subscribes to it)",
                [_GROUP, _INSTANCE, _TOPIC, *read_params],
                _ok("Records", records, MEDIA_JSON_V1, MEDIA_BINARY_V1),
                (*read_errors, ErrorCode.UNKNOWN_TOPIC),
                tag=tag,
            )
        },
        i + "/offsets": {
            "post": _op(
                "Commit (offset of the last processed record; empty: all consumed)",
                [_GROUP, _INSTANCE],
                _ok("Committed", {"type": "array"}),
                (*state, *_FENCING, ErrorCode.INVALID_OFFSET),
                body=_json_body(obj),
                tag=tag,
            ),
            "get": _op(
                "Committed offsets", [_GROUP, _INSTANCE], _ok("Offsets", obj), state, tag=tag
            ),
        },
    }


def _v3_group_paths() -> dict[str, Any]:
    c = "/v3/clusters/{cluster_id}/consumer-groups"
    lst = _ok("Collection", _ref("V3List"))
    one = _ok("Resource", _ref("V3Resource"))
    errors = (ErrorCode.UNKNOWN_CLUSTER, ErrorCode.UNKNOWN_GROUP, *_COORD)
    missing = (*errors, ErrorCode.NOT_FOUND)  # the group exists; the member or partition not

    def get(
        summary: str, params: list[dict[str, Any]], answer: dict[str, Any], errs: Any = errors
    ) -> dict[str, Any]:
        return {"get": _op(summary, params, answer, errs, tag="v3")}

    member = [_CLUSTER, _GROUP, _CONSUMER]
    return {
        c: get("Consumer groups", [_CLUSTER], lst, (ErrorCode.UNKNOWN_CLUSTER, *_ALWAYS)),
        c + "/{group}": get("Consumer group", [_CLUSTER, _GROUP], one),
        c + "/{group}/consumers": get("Members", [_CLUSTER, _GROUP], lst),
        c + "/{group}/consumers/{consumer}": get("One member", member, one, missing),
        c + "/{group}/consumers/{consumer}/assignments": get(
            "One member's partitions", member, lst, missing
        ),
        c + "/{group}/consumers/{consumer}/assignments/{topic}/partitions/{partition}": get(
            "One partition of a member's", [*member, _TOPIC, _PARTITION], one, missing
        ),
        c + "/{group}/lags/{topic}/partitions/{partition}": get(
            "Lag on one partition", [_CLUSTER, _GROUP, _TOPIC, _PARTITION], one, missing
        ),
        c + "/{group}/lags": get(
            "Lag per partition: high watermark - committed offset", [_CLUSTER, _GROUP], lst
        ),
        c + "/{group}/lag-summary": get("Largest and total lag", [_CLUSTER, _GROUP], one),
    }


def build_spec(config: BrokerConfig) -> dict[str, Any]:
    """The OpenAPI document for a broker with ``config``."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kbroker HTTP API",
            "version": __version__,
            "description": "Confluent REST Proxy v2/v3 compatible API with kbroker "
            "extensions; see docs/api.md.",
        },
        "servers": [{"url": config.url}],
        "paths": {
            **_v2_paths(config),
            **_v3_paths(),
            **_group_paths(),
            **_consumer_paths(),
            **_v3_group_paths(),
        },
        "components": {"schemas": _schemas(config)},
    }


async def get_spec(request: web.Request) -> web.Response:
    return json_response(build_spec(request.app[SERVICES].config))


def routes() -> list[web.RouteDef]:
    # /openapi and /openapi/v3 are where Strimzi's bridge serves its description.
    return [web.get(path, get_spec) for path in ("/openapi.json", "/openapi", "/openapi/v3")]
