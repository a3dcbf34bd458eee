"""Connection records in moto's DynamoDB, in the Terraform-defined table."""

from __future__ import annotations

import time
import zlib
from typing import Any

from bench.env import TABLE


def connection_id(room: str, index: int) -> str:
    """A 16-character id shaped like API Gateway's (base64-like, ending in '=')."""
    return f"{zlib.crc32(room.encode()) % 10**5:05d}{index:010d}="


def seed_room(
    client: Any, room: str, count: int, *, user_prefix: str = "u", memberships_table: str | None = None
) -> list[str]:
    """Put ``count`` live connections in ``room`` (batch writes of 25); returns their ids. With
    ``memberships_table``, each also gets its membership of the room (what a broadcast reads)."""
    ttl = str(int(time.time()) + 7200)
    ids = [connection_id(room, i) for i in range(count)]
    if memberships_table is not None:
        for start in range(0, count, 25):
            members = [
                {
                    "PutRequest": {
                        "Item": {
                            "room_id": {"S": room},
                            "member": {"S": f"{user_prefix}{start + i}#{cid}"},
                            "connection_id": {"S": cid},
                            "user_id": {"S": f"{user_prefix}{start + i}"},
                            "ttl": {"N": ttl},
                            "since": {"N": "0"},
                        }
                    }
                }
                for i, cid in enumerate(ids[start : start + 25])
            ]
            client.batch_write_item(RequestItems={memberships_table: members})
    for start in range(0, count, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "connection_id": {"S": cid},
                        "room_id": {"S": room},
                        "user_id": {"S": f"{user_prefix}{start + i}"},
                        "ttl": {"N": ttl},
                        "created_at": {"S": "2026-11-29T00:00:00Z"},
                        "rooms": {"SS": [room]},
                    }
                }
            }
            for i, cid in enumerate(ids[start : start + 25])
        ]
        client.batch_write_item(RequestItems={TABLE: requests})
    return ids
