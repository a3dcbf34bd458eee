"""The connection store: one DynamoDB item per WebSocket connection (docs/protocol.md section 5).

Reads skip records whose ``ttl`` has passed: DynamoDB deletes expired items up to 48 hours late, and a
connection API Gateway has closed (it closes every connection at 2 hours) must not be delivered to.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from shared import deadline

# API Gateway closes every connection after 2 hours; the record outlives it by a margin for clock skew.
TTL_SECONDS = 2 * 3600 + 10 * 60
ROOM_INDEX = "room_id-index"
USER_INDEX = "user_id-index"


def dynamodb_client(*, pool_size: int = 10, connect_timeout: float = 2, read_timeout: float = 3) -> Any:
    """A DynamoDB client that fails fast enough for an API Gateway route (29 s, $connect 10 s):
    botocore's legacy default gives DynamoDB 10 attempts; 3 with standard backoff stay within ~2 s.
    Guarded by ``shared.deadline``: in an invocation, no attempt starts that could end past its deadline."""
    import boto3

    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=pool_size,
        tcp_keepalive=True,
    )
    return deadline.guard(boto3.client("dynamodb", config=config))


@dataclass(frozen=True, kw_only=True)
class Connection:
    connection_id: str
    room_id: str
    user_id: str
    ttl: int
    name: str | None = None
    created_at: str | None = None
    # Every room the connection is in (the first one, room_id, while it has not left it).
    rooms: frozenset[str] = frozenset()
    # The token's rooms claim, kept from $connect for later joins; None: any room.
    granted_rooms: tuple[str, ...] | None = None
    since: int = 0  # epoch seconds of $connect

    def expired(self, now: float) -> bool:
        return self.ttl <= now

    def may_join(self, room_id: str) -> bool:
        return self.granted_rooms is None or room_id in self.granted_rooms


class JoinOutcome(Enum):
    JOINED = "joined"
    ALREADY_IN = "already_in"
    TOO_MANY = "too_many"
    NO_RECORD = "no_record"


@dataclass(kw_only=True)
class RoomMembers:
    """The live connections of a room, and what reading them cost."""

    connections: list[Connection] = field(default_factory=list)
    pages: int = 0
    expired_skipped: int = 0

    @property
    def items_read(self) -> int:
        return len(self.connections) + self.expired_skipped


class ConnectionStore:
    """Data access for connection records. Takes a low-level DynamoDB client (injectable for tests)."""

    def __init__(
        self, table_name: str, *, client: Any = None, clock: Any = time.time, page_size: int | None = None
    ) -> None:
        self.table_name = table_name
        self._client = client if client is not None else dynamodb_client()
        self._clock = clock
        # Items per Query page; None lets DynamoDB fill each page up to 1 MB.
        self.page_size = page_size

    @property
    def client(self) -> Any:
        """The DynamoDB client (a deadline budgets its attempts)."""
        return self._client

    def put(
        self,
        *,
        connection_id: str,
        room_id: str,
        user_id: str,
        name: str | None = None,
        granted_rooms: tuple[str, ...] | None = None,
    ) -> Connection:
        now = self._clock()
        connection = Connection(
            connection_id=connection_id,
            room_id=room_id,
            user_id=user_id,
            name=name,
            ttl=int(now) + TTL_SECONDS,
            created_at=datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            rooms=frozenset({room_id}),
            granted_rooms=granted_rooms,
            since=int(now),
        )
        item = {
            "connection_id": {"S": connection.connection_id},
            "room_id": {"S": connection.room_id},
            "user_id": {"S": connection.user_id},
            "ttl": {"N": str(connection.ttl)},
            "created_at": {"S": connection.created_at},
            "rooms": {"SS": [room_id]},
            "since": {"N": str(connection.since)},
        }
        if name is not None:
            item["name"] = {"S": name}
        if granted_rooms is not None:
            item["granted_rooms"] = {"L": [{"S": room} for room in granted_rooms]}
        self._client.put_item(TableName=self.table_name, Item=item)
        return connection

    def get(self, connection_id: str) -> Connection | None:
        """The live record of a connection, or None when there is none or it has expired."""
        response = self._client.get_item(
            TableName=self.table_name, Key={"connection_id": {"S": connection_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        connection = _from_item(item)
        return None if connection.expired(self._clock()) else connection

    def delete(self, connection_id: str) -> None:
        """Remove a record; removing one that is already gone is not an error."""
        self._client.delete_item(TableName=self.table_name, Key={"connection_id": {"S": connection_id}})

    def add_room(self, connection_id: str, room_id: str, *, max_rooms: int) -> JoinOutcome:
        """Put a room in the connection's record, at most ``max_rooms`` of them (one conditional update)."""
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key={"connection_id": {"S": connection_id}},
                UpdateExpression="ADD rooms :r",
                ConditionExpression=(
                    "attribute_exists(connection_id) AND NOT contains(rooms, :room) "
                    "AND (attribute_not_exists(rooms) OR size(rooms) < :max)"
                ),
                ExpressionAttributeValues={
                    ":r": {"SS": [room_id]},
                    ":room": {"S": room_id},
                    ":max": {"N": str(max_rooms)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")
            if not old:
                return JoinOutcome.NO_RECORD
            if room_id in old.get("rooms", {}).get("SS", []):
                return JoinOutcome.ALREADY_IN
            return JoinOutcome.TOO_MANY
        return JoinOutcome.JOINED

    def remove_room(self, connection_id: str, room_id: str) -> bool:
        """Take a room out of the connection's record; False when it was not there."""
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key={"connection_id": {"S": connection_id}},
                UpdateExpression="DELETE rooms :r",
                ConditionExpression="contains(rooms, :room)",
                ExpressionAttributeValues={":r": {"SS": [room_id]}, ":room": {"S": room_id}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def take(self, connection_id: str) -> Connection | None:
        """Delete exactly this connection's record and return it as it was (None: there was none)."""
        response = self._client.delete_item(
            TableName=self.table_name, Key={"connection_id": {"S": connection_id}}, ReturnValues="ALL_OLD"
        )
        item = response.get("Attributes")
        return _from_item(item) if item else None

    def delete_if_exists(self, connection_id: str) -> bool:
        """Remove exactly this connection's record; False when there was none (e.g. $disconnect won)."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key={"connection_id": {"S": connection_id}},
                ConditionExpression="attribute_exists(connection_id)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def room_members(self, room_id: str) -> RoomMembers:
        """Every live connection in a room, following ``LastEvaluatedKey`` through every page."""
        now = self._clock()
        members = RoomMembers()
        for page in self._query_pages(ROOM_INDEX, "room_id", room_id):
            members.pages += 1
            for item in page.get("Items", []):
                connection = _from_item(item, room_id=room_id)
                if connection.expired(now):
                    members.expired_skipped += 1
                else:
                    members.connections.append(connection)
        return members

    def user_connections(self, user_id: str) -> list[Connection]:
        """Every live connection of a user (all pages)."""
        now = self._clock()
        connections = []
        for page in self._query_pages(USER_INDEX, "user_id", user_id):
            for item in page.get("Items", []):
                connection = _from_item(item, user_id=user_id)
                if not connection.expired(now):
                    connections.append(connection)
        return connections

    def _query_pages(self, index: str, key: str, value: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("query")
        yield from paginator.paginate(
            PaginationConfig={"PageSize": self.page_size} if self.page_size else {},
            TableName=self.table_name,
            IndexName=index,
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": key},
            ExpressionAttributeValues={":v": {"S": value}},
        )


def _from_item(item: dict[str, Any], *, room_id: str = "", user_id: str = "") -> Connection:
    def text(name: str, default: str | None = None) -> str | None:
        value = item.get(name)
        return value["S"] if value is not None else default

    ttl = item.get("ttl")
    granted = item.get("granted_rooms")
    return Connection(
        connection_id=item["connection_id"]["S"],
        room_id=text("room_id", room_id) or "",
        user_id=text("user_id", user_id) or "",
        name=text("name"),
        # A record without ttl (written by hand) never expires here; DynamoDB would never delete it either.
        ttl=int(ttl["N"]) if ttl is not None else 2**62,
        created_at=text("created_at"),
        rooms=frozenset(item.get("rooms", {}).get("SS", [])),
        granted_rooms=tuple(v["S"] for v in granted["L"]) if granted is not None else None,
        since=int(item.get("since", {"N": "0"})["N"]),
    )
