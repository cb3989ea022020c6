"""Query parameters: each failure names what is wrong with the value."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from kbroker.api.params import int_param
from kbroker.errors import BrokerError, ErrorCode


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("12x", "must be an integer"),
        ("", None),
        ("99999999999999999999999", "must be between 0 and 100"),
        ("-99999999999999999999999", "must be between 0 and 100"),
        ("101", "must be between 0 and 100"),
        ("7", None),
    ],
)
def test_int_param_says_why(raw: str, message: str | None) -> None:
    request = make_mocked_request("GET", f"/x?n={raw}")
    if message is None:
        assert int_param(request, "n", default=5, low=0, high=100) == (int(raw) if raw else 5)
        return
    with pytest.raises(BrokerError) as caught:
        int_param(request, "n", default=5, low=0, high=100)
    assert caught.value.code is ErrorCode.INVALID_PARAMETER
    assert message in caught.value.message
