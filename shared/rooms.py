"""The membership store: which connections are in which room, and who is present there (docs/rooms.md).

One table, hash key ``room_id``, range key ``member``, two key spaces that never meet, because a room id
cannot contain ``#``:

- ``(room, "<user_id>#<connection_id>")``: one connection in one room. A broadcast reads a room with one
  paginated Query of this partition; ``begins_with(member, "<user_id>#")`` finds one user's connections
  in it. Each carries the connection's ``ttl``, ``user_id``, ``connection_id`` and ``name``.
- ``("presence#" + room, user_id)``: the user's presence in the room, a string set ``connections`` of their
  connection ids there. Adding the first id is the user's "online", removing the last is their "offline":
  DynamoDB applies updates of one item one after the other, so exactly one join sees the set empty before it
  and exactly one leave sees it empty after it, however many tabs race. Two onlines (or offlines) in a row
  for one user and room cannot happen.

Which rooms a connection is in is kept on its connection record (:mod:`shared.connections`, a strongly
consistent read): ``$disconnect`` and a 410 find every membership to remove there, by exact key, so a
reconnect (a new connection id) is never touched.

Errors of DynamoDB cross this module's line as :class:`~shared.messages.StoreUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.connections import TTL_SECONDS
from shared.messages import StoreUnavailable

PRESENCE_PREFIX = "presence#"
TYPING_INTERVAL_MS = 2000


@dataclass(frozen=True, kw_only=True)
class Membership:
    room_id: str
    connection_id: str
    user_id: str
    ttl: int
    name: str | None = None
    since: int = 0  # epoch seconds the connection was made (a 410 that soon may be a $connect still running)

    def expired(self, now: float) -> bool:
        return self.ttl <= now


@dataclass(kw_only=True)
class RoomMemberships:
    """The live memberships of a room, the expired ones it skipped, and what reading them cost."""

    live: list[Membership] = field(default_factory=list)
    expired: list[Membership] = field(default_factory=list)
    pages: int = 0
    truncated: bool = False  # reading stopped past ``room(stop_past=...)``: pages may be left unread

    @property
    def expired_skipped(self) -> int:
        return len(self.expired)

    @property
    def items_read(self) -> int:
        return len(self.live) + len(self.expired)


def member_key(user_id: str, connection_id: str) -> str:
    return f"{user_id}#{connection_id}"


class MembershipStore:
    """Data access for memberships and presence. Takes a low-level DynamoDB client (injectable)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any,
        clock: Callable[[], float] = time.time,
        page_size: int | None = None,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._clock = clock
        self.page_size = page_size

    def add(self, membership: Membership) -> None:
        item = {
            "room_id": {"S": membership.room_id},
            "member": {"S": member_key(membership.user_id, membership.connection_id)},
            "connection_id": {"S": membership.connection_id},
            "user_id": {"S": membership.user_id},
            "ttl": {"N": str(membership.ttl)},
            "since": {"N": str(membership.since)},
        }
        if membership.name is not None:
            item["name"] = {"S": membership.name}
        self._call("put_item", TableName=self.table_name, Item=item)

    def remove(self, room_id: str, user_id: str, connection_id: str) -> bool:
        """Remove exactly this membership; False when there was none."""
        return self._conditional(
            "delete_item",
            TableName=self.table_name,
            Key=self._key(room_id, member_key(user_id, connection_id)),
            ConditionExpression="attribute_exists(room_id)",
        )

    def enter(self, room_id: str, user_id: str, connection_id: str, *, name: str | None) -> bool:
        """Count the connection present in the room; True when it is the user's first one there."""
        names = {"#ttl": "ttl"}
        values: dict[str, Any] = {
            ":c": {"SS": [connection_id]},
            # Outlives every connection alive now: none lasts longer than TTL_SECONDS.
            ":ttl": {"N": str(int(self._clock()) + TTL_SECONDS)},
        }
        update = "ADD connections :c SET #ttl = :ttl"
        if name is not None:
            update += ", #name = :name"
            names["#name"] = "name"
            values[":name"] = {"S": name}
        response = self._call(
            "update_item",
            TableName=self.table_name,
            Key=self._key(PRESENCE_PREFIX + room_id, user_id),
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes") or {}
        before = set(old.get("connections", {}).get("SS", []))
        # An item past its ttl that DynamoDB has not deleted yet holds connections that are all closed.
        expired = "ttl" in old and int(old["ttl"]["N"]) <= self._clock()
        return not before or expired

    def depart(self, room_id: str, user_id: str, connection_id: str) -> bool:
        """Count the connection gone from the room; True when it was the user's last one there."""
        try:
            response = self._client.update_item(
                TableName=self.table_name,
                Key=self._key(PRESENCE_PREFIX + room_id, user_id),
                UpdateExpression="DELETE connections :c",
                ConditionExpression="contains(connections, :id)",
                ExpressionAttributeValues={":c": {"SS": [connection_id]}, ":id": {"S": connection_id}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False  # not counted there (already departed): nothing changes
            raise StoreUnavailable(f"could not update presence: {_code(error)}") from error
        except BotoCoreError as error:
            raise StoreUnavailable(f"could not update presence: {type(error).__name__}") from error
        # DynamoDB removes a set attribute when its last element goes.
        return "connections" not in (response.get("Attributes") or {})

    def typing_allowed(self, room_id: str, user_id: str, connection_id: str) -> bool:
        """Take this connection's typing slot in the room: False within 2 s of the last one taken."""
        now_ms = int(self._clock() * 1000)
        return self._conditional(
            "update_item",
            TableName=self.table_name,
            Key=self._key(room_id, member_key(user_id, connection_id)),
            UpdateExpression="SET typed_at = :now",
            ConditionExpression=(
                "attribute_exists(room_id) AND (attribute_not_exists(typed_at) OR typed_at <= :cut)"
            ),
            ExpressionAttributeValues={
                ":now": {"N": str(now_ms)},
                ":cut": {"N": str(now_ms - TYPING_INTERVAL_MS)},
            },
        )

    def room(self, room_id: str, *, stop_past: int | None = None) -> RoomMemberships:
        """Every membership of a room, live and expired apart, following every page; with ``stop_past``,
        no page is read once more than that many live ones were (``truncated`` then says so)."""
        now = self._clock()
        result = RoomMemberships()
        for page in self._pages(
            KeyConditionExpression="room_id = :r", ExpressionAttributeValues={":r": {"S": room_id}}
        ):
            result.pages += 1
            for item in page.get("Items", []):
                membership = _from_item(item, room_id)
                (result.expired if membership.expired(now) else result.live).append(membership)
            if stop_past is not None and len(result.live) > stop_past:
                result.truncated = True
                break
        return result

    def _pages(self, **query: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("query")
        try:
            yield from paginator.paginate(
                PaginationConfig={"PageSize": self.page_size} if self.page_size else {},
                TableName=self.table_name,
                **query,
            )
        except (ClientError, BotoCoreError) as error:
            raise StoreUnavailable(f"could not read the room: {_describe(error)}") from error

    def _key(self, room: str, member: str) -> dict[str, Any]:
        return {"room_id": {"S": room}, "member": {"S": member}}

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self._client, operation)(**params)
        except (ClientError, BotoCoreError) as error:
            raise StoreUnavailable(f"could not update the room: {_describe(error)}") from error
        return response

    def _conditional(self, operation: str, **params: Any) -> bool:
        try:
            getattr(self._client, operation)(**params)
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailable(f"could not update the room: {_code(error)}") from error
        except BotoCoreError as error:
            raise StoreUnavailable(f"could not update the room: {type(error).__name__}") from error
        return True


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "ClientError"))


def _describe(error: Exception) -> str:
    return _code(error) if isinstance(error, ClientError) else type(error).__name__


def _from_item(item: dict[str, Any], room_id: str) -> Membership:
    name = item.get("name")
    return Membership(
        room_id=room_id,
        connection_id=item["connection_id"]["S"],
        user_id=item["user_id"]["S"],
        ttl=int(item["ttl"]["N"]),
        name=name["S"] if name is not None else None,
        since=int(item.get("since", {"N": "0"})["N"]),
    )
