"""The message store: every chat message, kept ``MESSAGE_RETENTION_DAYS`` in DynamoDB (docs/history.md).

One table, hash key ``room_id``, range key ``message_id``, three key spaces that can never meet, because a
room id cannot contain ``#`` and a ULID cannot contain ``#`` or lower case:

- ``(room, ULID)``: a room's messages, in the order they were stored. A history page is one Query on
  this partition, bounded to the ULIDs of the retention window.
- ``("client#" + user_id, client_msg_id)``: which message a user's ``client_msg_id`` became. Written in
  the same transaction as the message, so a retry finds the first message instead of storing a second.
- ``("rate#" + user_id, "bucket")``: the user's rate-limit bucket (:mod:`shared.rate_limit`).
- ``(conversation_key(a, b), ULID)``: the direct messages between two users, stored and paged exactly like
  a room's. The key starts with ``dm#`` and spells both user ids length-prefixed, so no room, no other
  prefix and no other pair of users can produce it.

Every item carries ``ttl`` (epoch seconds). DynamoDB deletes expired items up to 48 hours late, so reads
skip them. Errors of DynamoDB cross this module's line as :class:`StoreUnavailable`, never as botocore's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import ids
from shared.protocol import direct_object, message_object, utc_timestamp

CLIENT_KEY_PREFIX = "client#"
RATE_KEY_PREFIX = "rate#"
DIRECT_KEY_PREFIX = "dm#"
_MAX_ID_ATTEMPTS = 3


def conversation_key(user_a: str, user_b: str) -> str:
    """The hash key of the direct conversation between two users (the same for either order)."""
    low, high = sorted((user_a, user_b))
    return f"{DIRECT_KEY_PREFIX}{len(low)}:{low}#{high}"


class StoreUnavailable(Exception):
    """DynamoDB refused or could not be reached; nothing is known to be stored."""


@dataclass(frozen=True, kw_only=True)
class StoredMessage:
    room_id: str
    message_id: str
    user_id: str
    message: str
    timestamp: str
    ttl: int
    name: str | None = None
    client_msg_id: str | None = None
    to_user_id: str | None = None  # a direct message (room_id is then the conversation's key)

    def as_frame(self) -> dict[str, Any]:
        if self.to_user_id is not None:
            return direct_object(
                from_user_id=self.user_id,
                to_user_id=self.to_user_id,
                message=self.message,
                message_id=self.message_id,
                timestamp=self.timestamp,
                name=self.name,
                client_msg_id=self.client_msg_id,
            )
        return message_object(
            room_id=self.room_id,
            user_id=self.user_id,
            message=self.message,
            message_id=self.message_id,
            timestamp=self.timestamp,
            name=self.name,
            client_msg_id=self.client_msg_id,
        )


@dataclass(frozen=True, kw_only=True)
class SaveResult:
    message: StoredMessage
    duplicate: bool  # the client_msg_id was stored before: ``message`` is that first message


@dataclass(frozen=True, kw_only=True)
class HistoryPage:
    messages: list[StoredMessage]  # oldest first
    has_more: bool
    expired_skipped: int = 0


class MessageStore:
    """Data access for messages. Takes a low-level DynamoDB client (injectable for tests)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any,
        retention_days: int,
        clock: Callable[[], float] = time.time,
        id_generator: ids.UlidGenerator | None = None,
    ) -> None:
        self.table_name = table_name
        self.retention_seconds = retention_days * 86_400
        self._client = client
        self._clock = clock
        self._ids = id_generator or ids.UlidGenerator(clock_ms=lambda: int(self._clock() * 1000))

    def save(
        self,
        *,
        room_id: str,
        user_id: str,
        text: str,
        name: str | None = None,
        client_msg_id: str | None = None,
        to_user_id: str | None = None,
    ) -> SaveResult:
        """Store a message; with a ``client_msg_id`` this user stored before (within retention), store
        nothing and return that first message. ``to_user_id``: a direct message, stored under
        ``conversation_key(user_id, to_user_id)`` (``room_id`` is ignored)."""
        if to_user_id is not None:
            room_id = conversation_key(user_id, to_user_id)
        try:
            return self._save(room_id, user_id, text, name, client_msg_id, to_user_id)
        except (ClientError, BotoCoreError) as error:
            raise StoreUnavailable(f"could not store the message: {_code(error)}") from error

    def page(self, room_id: str, *, before: str | None, after: str | None, limit: int) -> HistoryPage:
        """One page of a room's history, oldest first: the newest ``limit`` messages, or those just
        before ``before`` / just after ``after``. One Query, strongly consistent (a client resuming
        must see what was acknowledged a moment ago)."""
        try:
            return self._page(room_id, before, after, limit)
        except (ClientError, BotoCoreError) as error:
            raise StoreUnavailable(f"could not read the history: {_code(error)}") from error

    def _save(
        self,
        room_id: str,
        user_id: str,
        text: str,
        name: str | None,
        client_msg_id: str | None,
        to_user_id: str | None,
    ) -> SaveResult:
        stale_target: str | None = None
        for _ in range(_MAX_ID_ATTEMPTS):
            message_id = self._ids.new()
            ms = ids.timestamp_ms(message_id)
            message = StoredMessage(
                room_id=room_id,
                message_id=message_id,
                user_id=user_id,
                message=text,
                timestamp=utc_timestamp_ms(ms),
                ttl=ms // 1000 + self.retention_seconds,
                name=name,
                client_msg_id=client_msg_id,
                to_user_id=to_user_id,
            )
            put_message = {
                "TableName": self.table_name,
                "Item": _to_item(message),
                "ConditionExpression": "attribute_not_exists(message_id)",
            }
            if client_msg_id is None:
                try:
                    self._client.put_item(**put_message, ReturnValuesOnConditionCheckFailure="ALL_OLD")
                except ClientError as error:
                    if _code(error) != "ConditionalCheckFailedException":
                        raise
                    # botocore retries a put whose answer was lost: the item it finds may be this very
                    # write, which must not be stored a second time under another id.
                    if error.response.get("Item") == put_message["Item"]:
                        return SaveResult(message=message, duplicate=False)
                    continue  # two writers drew the same ULID: draw again
                return SaveResult(message=message, duplicate=False)

            reasons = self._transact(message, put_message, client_msg_id, stale_target)
            if reasons is None:
                return SaveResult(message=message, duplicate=False)
            if reasons[1].get("Code") != "ConditionalCheckFailed":
                continue  # the message's own condition failed: a ULID collision
            first = self._first_message(user_id, client_msg_id, reasons[1].get("Item"))
            if first is not None:
                return SaveResult(message=first, duplicate=True)
            # The idempotency record outlived its message (deleted by hand, or expired in between):
            # this send is new, and may replace exactly that record.
            stale_target = self._client_record_target(user_id, client_msg_id)
        raise StoreUnavailable("could not find a free message id")

    def _transact(
        self,
        message: StoredMessage,
        put_message: dict[str, Any],
        client_msg_id: str,
        stale_target: str | None,
    ) -> list[dict[str, Any]] | None:
        """Write the message and its idempotency record together; None when both were written, else the
        cancellation reasons (one per item)."""
        now = int(self._clock())
        condition = "attribute_not_exists(room_id) OR #ttl <= :now"
        values: dict[str, Any] = {":now": {"N": str(now)}}
        if stale_target is not None:
            condition += " OR target_message_id = :stale"
            values[":stale"] = {"S": stale_target}
        client_item = {
            "room_id": {"S": CLIENT_KEY_PREFIX + message.user_id},
            "message_id": {"S": client_msg_id},
            "target_room_id": {"S": message.room_id},
            "target_message_id": {"S": message.message_id},
            "ttl": {"N": str(message.ttl)},
        }
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {"Put": put_message},
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": client_item,
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#ttl": "ttl"},
                            "ExpressionAttributeValues": values,
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                ]
            )
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            reasons: list[dict[str, Any]] = error.response.get("CancellationReasons") or []
            codes = [reason.get("Code") for reason in reasons]
            # Anything but a failed condition (a conflicting transaction, throttling) is the store
            # failing: the sender is told so and retries with the same client_msg_id.
            if len(codes) != 2 or "ConditionalCheckFailed" not in codes:
                raise
            if any(code not in (None, "None", "ConditionalCheckFailed") for code in codes):
                raise
            return reasons
        return None

    def _client_record_target(self, user_id: str, client_msg_id: str) -> str | None:
        item = self._get(CLIENT_KEY_PREFIX + user_id, client_msg_id)
        return item["target_message_id"]["S"] if item else None

    def _first_message(
        self, user_id: str, client_msg_id: str, record: dict[str, Any] | None
    ) -> StoredMessage | None:
        if record is None:
            record = self._get(CLIENT_KEY_PREFIX + user_id, client_msg_id)
            if record is None:
                return None
        item = self._get(record["target_room_id"]["S"], record["target_message_id"]["S"])
        if item is None:
            return None
        message = _from_item(item)
        return None if message.ttl <= self._clock() else message

    def _get(self, hash_key: str, range_key: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self.table_name,
            Key={"room_id": {"S": hash_key}, "message_id": {"S": range_key}},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _page(self, room_id: str, before: str | None, after: str | None, limit: int) -> HistoryPage:
        now = self._clock()
        # Nothing older than the retention window is live: bounding the range keeps expired items DynamoDB
        # has not deleted yet out of the page (and out of the read cost).
        low = ids.lowest_at(int((now - self.retention_seconds) * 1000))
        high = ids.MAX_ID
        if after is not None:
            following = ids.successor(after)
            if following is None:
                return HistoryPage(messages=[], has_more=False)
            low = max(low, following)
        if before is not None:
            preceding = ids.predecessor(before)
            if preceding is None:
                return HistoryPage(messages=[], has_more=False)
            high = preceding
        if low > high:
            return HistoryPage(messages=[], has_more=False)
        forward = after is not None
        response = self._client.query(
            TableName=self.table_name,
            KeyConditionExpression="room_id = :room AND message_id BETWEEN :low AND :high",
            ExpressionAttributeValues={":room": {"S": room_id}, ":low": {"S": low}, ":high": {"S": high}},
            ScanIndexForward=forward,
            # One more than asked: its presence is has_more, without a second Query.
            Limit=limit + 1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        found = [_from_item(item) for item in items]
        live = [message for message in found if message.ttl > now]
        page = live[:limit]
        # A page cut short by DynamoDB's 1 MB limit also ends with a LastEvaluatedKey.
        has_more = bool(page) and (len(items) > limit or "LastEvaluatedKey" in response)
        if not forward:
            page.reverse()
        return HistoryPage(messages=page, has_more=has_more, expired_skipped=len(found) - len(live))


def utc_timestamp_ms(ms: int) -> str:
    return utc_timestamp(datetime.fromtimestamp(ms / 1000, UTC))


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _to_item(message: StoredMessage) -> dict[str, Any]:
    item = {
        "room_id": {"S": message.room_id},
        "message_id": {"S": message.message_id},
        "user_id": {"S": message.user_id},
        "message": {"S": message.message},
        "timestamp": {"S": message.timestamp},
        "ttl": {"N": str(message.ttl)},
    }
    if message.name is not None:
        item["name"] = {"S": message.name}
    if message.client_msg_id is not None:
        item["client_msg_id"] = {"S": message.client_msg_id}
    if message.to_user_id is not None:
        item["to_user_id"] = {"S": message.to_user_id}
    return item


def _from_item(item: dict[str, Any]) -> StoredMessage:
    def optional(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value is not None else None

    return StoredMessage(
        room_id=item["room_id"]["S"],
        message_id=item["message_id"]["S"],
        user_id=item["user_id"]["S"],
        message=item["message"]["S"],
        timestamp=item["timestamp"]["S"],
        ttl=int(item["ttl"]["N"]),
        name=optional("name"),
        client_msg_id=optional("client_msg_id"),
        to_user_id=optional("to_user_id"),
    )
