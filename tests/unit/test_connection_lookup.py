"""The sender's own record is read with ``ConsistentRead``: a message sent right after ``$connect`` must find
the record that call just wrote (an eventually consistent read may miss it and refuse the message)."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from shared.connections import ConnectionStore


def test_get_reads_the_record_strongly_consistent() -> None:
    # Seeded defect: GetItem without ConsistentRead survived the suite (moto is always consistent).
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    item = {
        "connection_id": {"S": "C1xxxxxxxxxxxx0="},
        "room_id": {"S": "general"},
        "user_id": {"S": "alice"},
        "ttl": {"N": "4000000000"},
    }
    with Stubber(client) as stub:
        stub.add_response(
            "get_item",
            {"Item": item},
            expected_params={
                "TableName": "chat_connections",
                "Key": {"connection_id": {"S": "C1xxxxxxxxxxxx0="}},
                "ConsistentRead": True,
            },
        )
        connection = ConnectionStore("chat_connections", client=client, clock=lambda: 1_000.0).get(
            "C1xxxxxxxxxxxx0="
        )
        stub.assert_no_pending_responses()
    assert connection is not None and (connection.room_id, connection.user_id) == ("general", "alice")
