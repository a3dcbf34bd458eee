"""Connection records in the unit-test table: write one by hand, read them back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from local_stack.dynamodb import dynamodb_client

TABLE = "chat_connections"
MESSAGES_TABLE = "chat_messages"
MEMBERSHIPS_TABLE = "chat_memberships"


def put_record(
    dynamodb: Any,
    cid: str,
    room: str,
    user: str = "u",
    *,
    ttl: int | None = None,
    name: str | None = None,
    rooms: tuple[str, ...] = (),
    memberships: bool = True,
) -> None:
    """A connection record in ``room`` (and ``rooms``), with its memberships and presence (as a
    $connect and joins leave them) unless ``memberships`` is False (the connections table alone)."""
    expiry = ttl if ttl is not None else int(time.time()) + 7200
    item = {
        "connection_id": {"S": cid},
        "room_id": {"S": room},
        "user_id": {"S": user},
        "ttl": {"N": str(expiry)},
        "created_at": {"S": "2026-11-29T00:00:00Z"},
        "rooms": {"SS": sorted({room, *rooms})},
    }
    if name:
        item["name"] = {"S": name}
    dynamodb.put_item(TableName=TABLE, Item=item)
    if not memberships:
        return
    for each in sorted({room, *rooms}):
        put_membership(dynamodb, cid, each, user, ttl=expiry, name=name)


def put_membership(
    dynamodb: Any, cid: str, room: str, user: str, *, ttl: int, name: str | None = None
) -> None:
    member = {
        "room_id": {"S": room},
        "member": {"S": f"{user}#{cid}"},
        "connection_id": {"S": cid},
        "user_id": {"S": user},
        "ttl": {"N": str(ttl)},
        "since": {"N": "0"},
    }
    if name:
        member["name"] = {"S": name}
    dynamodb.put_item(TableName=MEMBERSHIPS_TABLE, Item=member)
    dynamodb.update_item(
        TableName=MEMBERSHIPS_TABLE,
        Key={"room_id": {"S": "presence#" + room}, "member": {"S": user}},
        UpdateExpression="ADD connections :c SET #ttl = :ttl",
        ExpressionAttributeNames={"#ttl": "ttl"},
        ExpressionAttributeValues={":c": {"SS": [cid]}, ":ttl": {"N": str(ttl)}},
    )


def table_client(endpoint: str, region: str = "us-east-1") -> Any:
    return dynamodb_client(endpoint, region)  # as the stack makes its own


def table_items(client: Any, table: str = TABLE, **scan: Any) -> Iterator[dict[str, Any]]:
    """Every item of a consistent Scan, page after page (a page stops at 1 MB)."""
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True, **scan}
    while True:
        page = client.scan(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def records(dynamodb: Any) -> list[dict[str, Any]]:
    return list(table_items(dynamodb))


def record_ids(dynamodb: Any) -> set[str]:
    return {item["connection_id"]["S"] for item in table_items(dynamodb)}


def table_ids(client: Any) -> set[str]:
    return record_ids(client)
