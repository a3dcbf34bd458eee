"""The embedded DynamoDB behaves like DynamoDB under concurrent requests (moto alone does not)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb import models

from local_stack.dynamodb import EmbeddedDynamoDB, dynamodb_client
from tests.support.tables import create_messages_table

TABLE = "atomic_messages"
PAUSE = "attribute_not_exists(room_id) AND attribute_not_exists(pause_here)"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    server = EmbeddedDynamoDB()
    endpoint = server.start()
    db = dynamodb_client(endpoint, "us-east-1")
    create_messages_table(db, TABLE)
    yield db
    server.stop()


def put_once(db: Any, key: str, writer: int) -> bool:
    try:
        db.put_item(
            TableName=TABLE,
            Item={"room_id": {"S": key}, "message_id": {"S": "x"}, "writer": {"N": str(writer)}},
            ConditionExpression="attribute_not_exists(room_id)",
        )
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
        return False
    return True


def transact(db: Any, room: str, message_id: str, client_msg_id: str, pause: bool = False) -> bool:
    item = {"room_id": {"S": room}, "message_id": {"S": message_id}, "ttl": {"N": "9999999999"}}
    record = {"room_id": {"S": "client#u"}, "message_id": {"S": client_msg_id}, "ttl": {"N": "9999999999"}}
    puts = [
        (item, "attribute_not_exists(message_id)"),
        (record, PAUSE if pause else "attribute_not_exists(room_id)"),
    ]
    try:
        db.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": it, "ConditionExpression": condition}}
                for it, condition in puts
            ]
        )
    except ClientError as error:
        assert error.response["Error"]["Code"] == "TransactionCanceledException"
        return False
    return True


def test_a_cancelled_transaction_never_erases_a_write_made_while_it_ran(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto backs a transaction up as a copy of the whole table and puts it back when it is cancelled: a write
    # landing while it ran was erased. Paused in its second condition, cancelled: the write must survive.
    assert transact(client, "tx", "first", "repeated")
    inside, release = threading.Event(), threading.Event()
    original = models.get_filter_expression

    def pausing(expression: Any, *args: Any, **kwargs: Any) -> Any:
        if expression == PAUSE:
            inside.set()
            release.wait(5)
        return original(expression, *args, **kwargs)

    monkeypatch.setattr(models, "get_filter_expression", pausing)
    outcome: list[bool] = []
    worker = threading.Thread(
        target=lambda: outcome.append(transact(client, "tx", "never", "repeated", pause=True))
    )
    worker.start()
    assert inside.wait(5)
    writer = threading.Thread(target=lambda: put_once(client, "written-meanwhile", 1))
    writer.start()
    writer.join(0.5)  # with the lock it waits for the transaction; without it, it lands now
    release.set()
    worker.join(10)
    writer.join(10)
    assert outcome == [False]
    kept = client.get_item(
        TableName=TABLE,
        Key={"room_id": {"S": "written-meanwhile"}, "message_id": {"S": "x"}},
        ConsistentRead=True,
    ).get("Item")
    assert kept is not None, "the cancelled transaction's rollback erased a concurrent write"
    stored = client.query(
        TableName=TABLE,
        KeyConditionExpression="room_id = :r",
        ExpressionAttributeValues={":r": {"S": "tx"}},
        ConsistentRead=True,
    )["Items"]
    assert [i["message_id"]["S"] for i in stored] == ["first"]  # its own half was undone
