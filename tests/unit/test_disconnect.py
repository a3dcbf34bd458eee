from __future__ import annotations

from typing import Any

import pytest

from local_stack.testing import FakeContext, make_token
from tests.conftest import load_function
from tests.support.events import connect_event, disconnect_event
from tests.support.records import TABLE


@pytest.fixture
def functions(dynamodb: Any) -> tuple[Any, Any]:
    return load_function("connect"), load_function("disconnect")


def test_disconnect_deletes_exactly_that_connection(functions: tuple[Any, Any], dynamodb: Any) -> None:
    connect, disconnect = functions
    for cid in ("AAAAAAAAAAAAAA0=", "BBBBBBBBBBBBBB0="):
        connect.handler(
            connect_event({"token": make_token(), "room_id": "r"}, connection_id=cid), FakeContext()
        )
    response = disconnect.handler(disconnect_event(connection_id="AAAAAAAAAAAAAA0="), FakeContext())
    assert response["statusCode"] == 200
    left = [item["connection_id"]["S"] for item in dynamodb.scan(TableName=TABLE)["Items"]]
    assert left == ["BBBBBBBBBBBBBB0="]


def test_disconnect_of_unknown_connection_succeeds(functions: tuple[Any, Any], dynamodb: Any) -> None:
    _, disconnect = functions
    event = disconnect_event(connection_id="ZZZZZZZZZZZZZZ0=", status=1006, reason="")
    assert disconnect.handler(event, FakeContext())["statusCode"] == 200


def test_disconnect_delete_fits_in_the_invocation(functions: tuple[Any, Any], dynamodb: Any) -> None:
    connect, disconnect = functions
    connect.handler(connect_event({"token": make_token(), "room_id": "r"}), FakeContext())
    # 1 s connect + 2 s read timeout per attempt, 0.5 s margin: 3 s left is too little to start one.
    with pytest.raises(Exception, match="deadline"):
        disconnect.handler(disconnect_event(connection_id="BFHPhfCWIAMCKlQ="), FakeContext(seconds=3.0))
    assert len(dynamodb.scan(TableName=TABLE)["Items"]) == 1  # left to its ttl
    event = disconnect_event(connection_id="BFHPhfCWIAMCKlQ=")
    assert disconnect.handler(event, FakeContext(seconds=4.0))["statusCode"] == 200
    assert dynamodb.scan(TableName=TABLE)["Items"] == []
