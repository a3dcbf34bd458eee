"""Connection records in the unit-test table: write one by hand, read them back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3

TABLE = "chat_connections"
MESSAGES_TABLE = "chat_messages"


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


def table_client(endpoint: str, region: str = "us-east-1") -> Any:
    """A DynamoDB client for a local endpoint (the stack's embedded DynamoDB)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


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
    return {item["connection_id"]["S"] for item in records(dynamodb)}
