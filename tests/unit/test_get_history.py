"""getHistory: pages of a room's stored messages, both directions, and every refusal."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared import ids
from shared.messages import MessageStore
from tests.conftest import load_function
from tests.support.events import FakeContext, message_event
from tests.support.management_api import FakeManagementApi
from tests.support.records import MESSAGES_TABLE

READER = "READERxxxxxxxx0="


@pytest.fixture
def history(connected: Any) -> Any:
    connected(READER, "general", "bob")
    return load_function("get_history")


@pytest.fixture
def store(dynamodb: Any) -> MessageStore:
    return MessageStore(MESSAGES_TABLE, client=dynamodb, retention_days=7)


def seed(store: MessageStore, count: int, room: str = "general") -> list[str]:
    return [store.save(room_id=room, user_id="alice", text=f"m{i}").message.message_id for i in range(count)]


def ask(module: Any, api: FakeManagementApi, **fields: Any) -> dict[str, Any]:
    api.reset()
    body = {"action": "getHistory", **fields}
    response = module.handler(message_event(body, connection_id=READER, route="getHistory"), FakeContext())
    [frame] = api.frames_to(READER)
    assert response["statusCode"] == 200, frame
    return frame


def test_get_history_newest_page_oldest_first(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 60)
    frame = ask(history, management_api)
    assert frame["action"] == "history" and frame["room_id"] == "general"
    assert [m["message_id"] for m in frame["messages"]] == sent[-50:]
    assert frame["has_more"] is True
    first = frame["messages"][0]
    assert first["action"] == "message" and first["user_id"] == "alice" and first["message"] == "m10"
    assert first["timestamp"].endswith("Z")


def test_get_history_of_an_empty_room(history: Any, management_api: FakeManagementApi) -> None:
    assert ask(history, management_api) == {
        "action": "history",
        "room_id": "general",
        "messages": [],
        "has_more": False,
    }


def test_get_history_pages_back_through_250_without_gap_or_repeat(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 250)
    seen: list[str] = []
    frame = ask(history, management_api, limit=40)
    pages = 1
    while True:
        page = [m["message_id"] for m in frame["messages"]]
        assert page == sorted(page)
        seen = page + seen
        if not frame["has_more"]:
            break
        frame = ask(history, management_api, before=page[0], limit=40)
        pages += 1
    assert seen == sent
    assert pages == 7


def test_get_history_pages_forward_through_250_without_gap_or_repeat(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 250)
    cursor = ids.lowest_at(int((time.time() - 60) * 1000))  # an id from before the first message
    seen: list[str] = []
    while True:
        frame = ask(history, management_api, after=cursor, limit=100)
        page = [m["message_id"] for m in frame["messages"]]
        seen += page
        if not frame["has_more"]:
            break
        cursor = page[-1]
    assert seen == sent


def test_get_history_after_the_last_id_is_empty(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 3)
    assert ask(history, management_api, after=sent[-1]) == {
        "action": "history",
        "room_id": "general",
        "messages": [],
        "has_more": False,
    }
    frame = ask(history, management_api, after=sent[0])
    assert [m["message_id"] for m in frame["messages"]] == sent[1:] and frame["has_more"] is False


def test_get_history_exact_page_boundary_has_no_more(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 10)
    frame = ask(history, management_api, limit=10)
    assert [m["message_id"] for m in frame["messages"]] == sent and frame["has_more"] is False
    frame = ask(history, management_api, limit=9)
    assert [m["message_id"] for m in frame["messages"]] == sent[1:] and frame["has_more"] is True


def test_get_history_shows_only_its_room(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    mine = seed(store, 3)
    seed(store, 3, room="other")
    store.save(room_id="general", user_id="bob", text="with id", client_msg_id="c-1")
    frame = ask(history, management_api)
    assert [m["message_id"] for m in frame["messages"]][:3] == mine
    assert len(frame["messages"]) == 4  # the client_msg_id record is not a message
    assert frame["messages"][-1]["client_msg_id"] == "c-1"


def test_get_history_skips_expired_messages(
    history: Any, dynamodb: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 5)
    # DynamoDB deletes expired items up to 48 h late: one whose ttl has passed is still in the table.
    dynamodb.update_item(
        TableName=MESSAGES_TABLE,
        Key={"room_id": {"S": "general"}, "message_id": {"S": sent[2]}},
        UpdateExpression="SET #t = :past",
        ExpressionAttributeNames={"#t": "ttl"},
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    frame = ask(history, management_api)
    assert [m["message_id"] for m in frame["messages"]] == sent[:2] + sent[3:]


def test_get_history_never_reads_past_the_retention_window(
    history: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    old = MessageStore(
        MESSAGES_TABLE, client=dynamodb, retention_days=30, clock=lambda: time.time() - 8 * 86400
    )
    [stale] = seed(old, 1)  # stored 8 days ago with a longer retention: outside today's 7 days
    fresh = MessageStore(MESSAGES_TABLE, client=dynamodb, retention_days=7)
    [live] = seed(fresh, 1)
    frame = ask(history, management_api, after=ids.MIN_ID)
    assert [m["message_id"] for m in frame["messages"]] == [live]
    assert stale < live


def test_get_history_page_is_cut_to_fit_one_frame(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    big = "x" * 4000
    sent = [store.save(room_id="general", user_id="alice", text=big).message.message_id for _ in range(60)]
    frame = ask(history, management_api, limit=60)
    page = [m["message_id"] for m in frame["messages"]]
    raw = management_api.delivered[-1][1]
    assert len(raw) <= 128 * 1024
    assert 20 < len(page) < 60 and page == sent[-len(page) :]  # the newest kept, next to the cursor
    assert frame["has_more"] is True
    frame = ask(history, management_api, after=sent[0], limit=60)
    page = [m["message_id"] for m in frame["messages"]]
    assert page == sent[1 : 1 + len(page)] and frame["has_more"] is True


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"before": "not-an-id"}, "invalid_request"),
        ({"after": "01ARZ3NDEKTSV4RRFFQ69G5FA"}, "invalid_request"),  # 25 characters
        ({"after": "01arz3ndektsv4rrffq69g5fav"}, "invalid_request"),  # lower case
        ({"after": "81ARZ3NDEKTSV4RRFFQ69G5FAV"}, "invalid_request"),  # beyond 128 bits
        ({"after": "01ARZ3NDEKTSV4RRFFQ69G5FAU"}, "invalid_request"),  # U is not Crockford base32
        ({"before": 12}, "invalid_request"),
        ({"before": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "after": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "invalid_request"),
        ({"limit": 0}, "invalid_request"),
        ({"limit": 101}, "invalid_request"),
        ({"limit": -1}, "invalid_request"),
        ({"limit": "50"}, "invalid_request"),
        ({"limit": 5.5}, "invalid_request"),
        ({"limit": True}, "invalid_request"),
        ({"limit": None}, "invalid_request"),
        ({"room_id": "other"}, "forbidden_room"),
        ({"room_id": 5}, "forbidden_room"),
        # forbidden_room comes first when several apply
        ({"room_id": "other", "limit": 0}, "forbidden_room"),
    ],
)
def test_get_history_refusals(
    history: Any, management_api: FakeManagementApi, fields: dict[str, Any], code: str
) -> None:
    frame = ask(history, management_api, **fields)
    assert frame["action"] == "error" and frame["code"] == code and frame["message"]


@pytest.mark.parametrize("limit", [1, 100])
def test_get_history_limit_bounds_are_accepted(
    history: Any, store: MessageStore, management_api: FakeManagementApi, limit: int
) -> None:
    seed(store, 101)
    frame = ask(history, management_api, limit=limit)
    assert len(frame["messages"]) == limit and frame["has_more"] is True


def test_get_history_ignores_unknown_keys_and_null_cursors(
    history: Any, store: MessageStore, management_api: FakeManagementApi
) -> None:
    sent = seed(store, 2)
    frame = ask(history, management_api, before=None, after=None, colour="blue", room_id="general")
    assert [m["message_id"] for m in frame["messages"]] == sent


def test_get_history_from_unregistered_connection_is_forbidden(
    history: Any, management_api: FakeManagementApi
) -> None:
    management_api.live.add("GHOSTxxxxxxxxx0=")
    event = message_event({"action": "getHistory"}, connection_id="GHOSTxxxxxxxxx0=", route="getHistory")
    history.handler(event, FakeContext())
    assert management_api.frames_to("GHOSTxxxxxxxxx0=")[0]["code"] == "forbidden_room"


def test_get_history_store_failure_is_internal(
    history: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    dynamodb.delete_table(TableName=MESSAGES_TABLE)
    event = message_event({"action": "getHistory"}, connection_id=READER, route="getHistory")
    assert history.handler(event, FakeContext())["statusCode"] == 500
    [frame] = management_api.frames_to(READER)
    assert frame["code"] == "internal" and "ResourceNotFound" not in frame["message"]


def test_get_history_messages_are_the_broadcast_frames(
    history: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("ALICExxxxxxxxx0=", "general", "alice", name="Alice")
    send = load_function("send_message")
    body = {"action": "sendMessage", "message": "héllo", "client_msg_id": "c-5"}
    send.handler(message_event(body, connection_id="ALICExxxxxxxxx0="), FakeContext())
    [live] = [f for f in management_api.frames_to(READER) if f["action"] == "message"]
    frame = ask(history, management_api)
    assert frame["messages"] == [live]
    assert json.loads(json.dumps(live))["name"] == "Alice"
