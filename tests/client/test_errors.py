"""One exception class per error code, each with the contract's status and retriability."""

from __future__ import annotations

import pytest

from kclient import Admin, BrokerError, BrokerUnavailableError, Producer, errors
from kclient.protocol import ErrorCode, error_spec


def test_every_code_has_its_own_class() -> None:
    classes = errors.ERROR_CLASSES
    assert set(classes) == set(ErrorCode)
    assert len(set(classes.values())) == len(ErrorCode)
    for code, cls in classes.items():
        spec = error_spec(code)
        assert cls.code is code
        assert cls.retriable is spec.retriable, cls
        assert issubclass(cls, BrokerError)
        assert cls.__name__ in errors.__all__
        assert cls(status=None).status == spec.status


def test_error_from_body_maps_codes_and_after_append() -> None:
    error = errors.error_from_body(
        503, {"error_code": 50310, "message": "slow", "retriable": True, "after_append": True}
    )
    assert isinstance(error, errors.RequestTimedOutError)
    assert error.retriable and error.after_append and error.status == 503
    unknown = errors.error_from_body(503, {"error_code": 50399, "message": "new"})
    assert type(unknown) is BrokerError and unknown.retriable
    assert isinstance(errors.error_from_body(500, None), BrokerError)


def test_real_broker_errors_arrive_as_their_classes(url: str) -> None:
    with Admin(url) as admin:
        with pytest.raises(errors.UnknownTopicError) as info:
            admin.describe_topic("no-such-topic")
        assert not info.value.retriable and info.value.status == 404
        with pytest.raises(errors.InvalidReplicationFactorError):
            admin.create_topic("bad-rf", partitions=1, replication_factor=5)


def test_unreachable_bootstrap_is_retriable() -> None:
    with pytest.raises(BrokerUnavailableError) as info:
        Producer("http://127.0.0.1:1")
    assert info.value.retriable
