"""Every function's handler over one moto table set and one fake management API (the ``chat`` fixture)."""

from __future__ import annotations

import json
import time
from typing import Any

from local_stack.config import REPO_ROOT
from local_stack.terraform import load_model
from local_stack.testing import FakeContext, FakeManagementApi, load_function, make_token
from tests.support.events import connect_event, disconnect_event, message_event
from tests.support.records import MEMBERSHIPS_TABLE, MESSAGES_TABLE, put_record, record_ids, table_items

# Route key -> function, as terraform/functions.tf routes them.
ROUTES = {route: name for name, route in load_model([REPO_ROOT / "terraform"]).route_keys.items()}


def cid(name: str) -> str:
    """A 16-character connection id like API Gateway's."""
    return (name.upper() + "x" * 15)[:15] + "="


def member_ids(n: int) -> list[str]:
    return [f"M{i:014d}0=" for i in range(n)]


class Chat:
    """Each function is loaded on its first use (after the test set its environment) and kept."""

    def __init__(self, dynamodb: Any, api: FakeManagementApi) -> None:
        self.dynamodb = dynamodb
        self.api = api
        self.functions: dict[str, Any] = {}

    def function(self, name: str) -> Any:
        if name not in self.functions:
            module = load_function(name)
            # Past the grace a 410 gets right after a $connect (test_rooms: the grace test).
            module.service._clock = lambda: time.time() + 60
            self.functions[name] = module
        return self.functions[name]

    def fresh(self, name: str) -> Any:
        """The function in a new execution environment."""
        self.functions.pop(name, None)
        return self.function(name)

    def put(
        self, connection_id: str, room: str, user: str = "u", *, live: bool = True, **options: Any
    ) -> str:
        """A stored connection (``put_record`` options), live at the fake API unless ``live`` is False."""
        put_record(self.dynamodb, connection_id, room, user, **options)
        if live:
            self.api.live.add(connection_id)
        return connection_id

    def crowd(self, room: str, n: int) -> list[str]:
        """``n`` live members of ``room``, user0, user1, ..."""
        return [self.put(member, room, f"user{i}") for i, member in enumerate(member_ids(n))]

    def connect(
        self, who: str, user: str, room: str, *, rooms: list[str] | None = None, live: bool = True
    ) -> str:
        """A connection made by the real $connect handler (a token for ``user`` named ``user.title()``)."""
        connection_id = cid(who)
        claims: dict[str, Any] = {"name": user.title()}
        if rooms is not None:
            claims["rooms"] = rooms
        if live:
            self.api.live.add(connection_id)
        event = connect_event(
            {"token": make_token(user, **claims), "room_id": room}, connection_id=connection_id
        )
        response = self.function("connect").handler(event, FakeContext())
        assert response["statusCode"] == 200, response
        return connection_id

    def send(self, connection_id: str, frame: dict[str, Any] | str, function: str | None = None) -> Any:
        """``frame`` from ``connection_id``, to ``function`` or else to the one its action routes to."""
        action = str(frame.get("action")) if isinstance(frame, dict) else None
        name = function or ROUTES.get(str(action), ROUTES["$default"])
        event = message_event(frame, connection_id=connection_id, route=str(action))
        return self.function(name).handler(event, FakeContext())

    def disconnect(self, connection_id: str) -> Any:
        self.api.live.discard(connection_id)
        return self.function("disconnect").handler(
            disconnect_event(connection_id=connection_id), FakeContext()
        )

    def frames(self, connection_id: str, action: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.api.frames_to(connection_id) if action is None or f["action"] == action]

    def messages(self, connection_id: str) -> list[tuple[str, str]]:
        """(room, text) of every message delivered to ``connection_id``."""
        return [(f["room_id"], f["message"]) for f in self.frames(connection_id, "message")]

    def presence(self, connection_id: str) -> list[tuple[str, str, str]]:
        return [(f["room_id"], f["user_id"], f["state"]) for f in self.frames(connection_id, "presence")]

    def memberships(self) -> set[tuple[str, str]]:
        """(room, member) of every membership (presence items left out)."""
        return {
            (item["room_id"]["S"], item["member"]["S"])
            for item in table_items(self.dynamodb, MEMBERSHIPS_TABLE)
            if not item["room_id"]["S"].startswith("presence#")
        }

    def rooms_of(self, connection_id: str) -> set[str]:
        return {room for room, member in self.memberships() if member.endswith("#" + connection_id)}

    def record_ids(self) -> set[str]:
        return record_ids(self.dynamodb)

    def stored(self, room: str = "general") -> list[dict[str, Any]]:
        """The messages stored in ``room``."""
        return self.dynamodb.query(
            TableName=MESSAGES_TABLE,
            KeyConditionExpression="room_id = :r",
            ExpressionAttributeValues={":r": {"S": room}},
            ConsistentRead=True,
        )["Items"]


def requeue(sqs: Any, jobs: list[dict[str, Any]]) -> None:
    """Put ``jobs`` (as ``bodies`` read them off the queue) back on it."""
    for job in jobs:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(job))


def queue_through(module: Any, client: Any) -> None:
    """``module``'s fanout queue sends its batches through ``client`` (a failing double), retrying at once."""
    module.service.fanout._client = client
    module.service.fanout._sleep = lambda seconds: None
