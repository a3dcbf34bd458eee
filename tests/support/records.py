"""Connection records in the unit-test table: write one by hand, read them back."""

from __future__ import annotations

import time
from typing import Any

TABLE = "chat_connections"


def put_record(
    dynamodb: Any, cid: str, room: str, user: str = "u", *, ttl: int | None = None, name: str | None = None
) -> None:
    item = {
        "connection_id": {"S": cid},
        "room_id": {"S": room},
        "user_id": {"S": user},
        "ttl": {"N": str(ttl if ttl is not None else int(time.time()) + 7200)},
        "created_at": {"S": "2026-11-29T00:00:00Z"},
    }
    if name:
        item["name"] = {"S": name}
    dynamodb.put_item(TableName=TABLE, Item=item)


def records(dynamodb: Any) -> list[dict[str, Any]]:
    return dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]


def record_ids(dynamodb: Any) -> set[str]:
    return {item["connection_id"]["S"] for item in records(dynamodb)}
