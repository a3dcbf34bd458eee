from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.stub import Stubber

from shared.connections import TTL_SECONDS, ConnectionStore
from tests.support.records import TABLE


def test_put_get_and_ttl_window(dynamodb: Any) -> None:
    store = ConnectionStore(TABLE, clock=lambda: 1_000_000.0)
    connection = store.put(connection_id="C1xxxxxxxxxxxx0=", room_id="r", user_id="u", name="U")
    assert 2 * 3600 <= TTL_SECONDS <= 2 * 3600 + 15 * 60
    assert connection.ttl == 1_000_000 + TTL_SECONDS
    assert store.get("C1xxxxxxxxxxxx0=") == connection


def test_get_ignores_expired_record(dynamodb: Any) -> None:
    ConnectionStore(TABLE, clock=lambda: 0.0).put(connection_id="OLDxxxxxxxxxxx0=", room_id="r", user_id="u")
    assert ConnectionStore(TABLE).get("OLDxxxxxxxxxxx0=") is None


def test_room_members_skips_expired_and_counts_pages(dynamodb: Any) -> None:
    now = time.time()
    ConnectionStore(TABLE, clock=lambda: now - 3 * 3600).put(connection_id="OLD", room_id="r", user_id="u")
    live = ConnectionStore(TABLE, page_size=2)
    for i in range(5):
        live.put(connection_id=f"LIVE{i}", room_id="r", user_id="u")
    live.put(connection_id="ELSEWHERE", room_id="other", user_id="u")
    members = live.room_members("r")
    assert sorted(c.connection_id for c in members.connections) == [f"LIVE{i}" for i in range(5)]
    assert members.expired_skipped == 1 and members.items_read == 6 and members.pages >= 3


def test_user_connections_across_rooms(dynamodb: Any) -> None:
    store = ConnectionStore(TABLE)
    store.put(connection_id="A", room_id="r1", user_id="alice")
    store.put(connection_id="B", room_id="r2", user_id="alice")
    store.put(connection_id="C", room_id="r1", user_id="bob")
    assert sorted((c.connection_id, c.room_id) for c in store.user_connections("alice")) == [
        ("A", "r1"),
        ("B", "r2"),
    ]


def test_delete_if_exists_reports_whether_it_deleted(dynamodb: Any) -> None:
    store = ConnectionStore(TABLE)
    store.put(connection_id="A", room_id="r", user_id="u")
    assert store.delete_if_exists("A") is True
    assert store.delete_if_exists("A") is False
    store.delete("A")  # idempotent


def test_get_reads_the_record_strongly_consistent() -> None:
    # A message sent right after $connect must find the record it wrote; moto is always consistent, so a
    # GetItem without ConsistentRead (a seeded defect) passed every other test.
    client = boto3.client("dynamodb", region_name="us-east-1")
    item = {
        "connection_id": {"S": "C1"},
        "room_id": {"S": "r"},
        "user_id": {"S": "alice"},
        "ttl": {"N": "4000"},
    }
    with Stubber(client) as stub:
        expected = {"TableName": TABLE, "Key": {"connection_id": {"S": "C1"}}, "ConsistentRead": True}
        stub.add_response("get_item", {"Item": item}, expected_params=expected)
        connection = ConnectionStore(TABLE, client=client, clock=lambda: 1_000.0).get("C1")
        stub.assert_no_pending_responses()
    assert connection is not None and (connection.room_id, connection.user_id) == ("r", "alice")
