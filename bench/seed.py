"""Connection records in moto's DynamoDB, in the Terraform-defined table."""

from __future__ import annotations

import time
import zlib
from typing import Any

from bench.env import TABLE


def connection_id(room: str, index: int) -> str:
    """A 16-character id shaped like API Gateway's (base64-like, ending in '=')."""
    return f"{zlib.crc32(room.encode()) % 10**5:05d}{index:010d}="


def _put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):  # BatchWriteItem's limit
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={table: batch})


def seed_room(
    client: Any, room: str, count: int, *, user_prefix: str = "u", memberships_table: str | None = None
) -> list[str]:
    """Put ``count`` live connections in ``room``; returns their ids. With ``memberships_table``, each also
    gets its membership of the room (what a broadcast reads)."""
    ttl = {"N": str(int(time.time()) + 7200)}
    ids = [connection_id(room, i) for i in range(count)]
    users = [f"{user_prefix}{i}" for i in range(count)]
    if memberships_table is not None:
        memberships = [
            {
                "room_id": {"S": room},
                "member": {"S": f"{user}#{cid}"},
                "connection_id": {"S": cid},
                "user_id": {"S": user},
                "ttl": ttl,
                "since": {"N": "0"},
            }
            for user, cid in zip(users, ids, strict=True)
        ]
        _put(client, memberships_table, memberships)
    records = [
        {
            "connection_id": {"S": cid},
            "room_id": {"S": room},
            "user_id": {"S": user},
            "ttl": ttl,
            "created_at": {"S": "2026-11-29T00:00:00Z"},
            "rooms": {"SS": [room]},
        }
        for user, cid in zip(users, ids, strict=True)
    ]
    _put(client, TABLE, records)
    return ids
