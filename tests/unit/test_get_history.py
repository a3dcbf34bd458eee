"""getHistory: pages of a room's stored messages, both directions, and every refusal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from local_stack.testing import FakeContext, FakeManagementApi
from shared import ids
from shared.messages import MessageStore
from tests.conftest import load_function
from tests.support.events import message_event
from tests.support.records import MESSAGES_TABLE

READER = "READERxxxxxxxx0="
EMPTY = {"action": "history", "room_id": "general", "messages": [], "has_more": False}
Ask = Callable[..., dict[str, Any]]
Seed = Callable[..., list[str]]


@pytest.fixture
def history(connected: Any) -> Any:
    connected(READER, "general", "bob")
    return load_function("get_history")


@pytest.fixture
def ask(history: Any, management_api: FakeManagementApi) -> Ask:
    """``ask(**fields)``: the one frame the reader gets for a getHistory with ``fields``."""

    def ask(**fields: Any) -> dict[str, Any]:
        management_api.reset()
        body = {"action": "getHistory", **fields}
        response = history.handler(
            message_event(body, connection_id=READER, route="getHistory"), FakeContext()
        )
        [frame] = management_api.frames_to(READER)
        assert response["statusCode"] == 200, frame
        return frame

    return ask


@pytest.fixture
def store(dynamodb: Any) -> MessageStore:
    return MessageStore(MESSAGES_TABLE, client=dynamodb, retention_days=7)


@pytest.fixture
def seed(store: MessageStore) -> Seed:
    """``seed(count)``: the ids of ``count`` messages alice stored (in ``store``, 7 days, unless ``into``)."""

    def seed(count: int, room: str = "general", text: str = "", into: MessageStore = store) -> list[str]:
        saved = (into.save(room_id=room, user_id="alice", text=text or f"m{i}") for i in range(count))
        return [result.message.message_id for result in saved]

    return seed


def message_ids(frame: dict[str, Any]) -> list[str]:
    return [m["message_id"] for m in frame["messages"]]


def test_get_history_newest_page_oldest_first(ask: Ask, seed: Seed) -> None:
    sent = seed(60)
    frame = ask()
    assert frame["action"] == "history" and frame["room_id"] == "general"
    assert message_ids(frame) == sent[-50:]
    assert frame["has_more"] is True
    first = frame["messages"][0]
    assert first["action"] == "message" and first["user_id"] == "alice" and first["message"] == "m10"
    assert first["timestamp"].endswith("Z")


def test_get_history_of_an_empty_room(ask: Ask) -> None:
    assert ask() == EMPTY


def test_get_history_pages_back_through_250_without_gap_or_repeat(ask: Ask, seed: Seed) -> None:
    sent = seed(250)
    seen: list[str] = []
    frame = ask(limit=40)
    pages = 1
    while True:
        page = message_ids(frame)
        assert page == sorted(page)
        seen = page + seen
        if not frame["has_more"]:
            break
        frame = ask(before=page[0], limit=40)
        pages += 1
    assert seen == sent
    assert pages == 7


def test_get_history_pages_forward_through_250_without_gap_or_repeat(ask: Ask, seed: Seed) -> None:
    sent = seed(250)
    cursor = ids.lowest_at(int((time.time() - 60) * 1000))  # an id from before the first message
    seen: list[str] = []
    while True:
        frame = ask(after=cursor, limit=100)
        page = message_ids(frame)
        seen += page
        if not frame["has_more"]:
            break
        cursor = page[-1]
    assert seen == sent


def test_get_history_after_the_last_id_is_empty(ask: Ask, seed: Seed) -> None:
    sent = seed(3)
    assert ask(after=sent[-1]) == EMPTY
    frame = ask(after=sent[0])
    assert message_ids(frame) == sent[1:] and frame["has_more"] is False


def test_get_history_exact_page_boundary_has_no_more(ask: Ask, seed: Seed) -> None:
    sent = seed(10)
    frame = ask(limit=10)
    assert message_ids(frame) == sent and frame["has_more"] is False
    frame = ask(limit=9)
    assert message_ids(frame) == sent[1:] and frame["has_more"] is True


def test_get_history_shows_only_its_room(ask: Ask, seed: Seed, store: MessageStore) -> None:
    mine = seed(3)
    seed(3, room="other")
    store.save(room_id="general", user_id="bob", text="with id", client_msg_id="c-1")
    frame = ask()
    assert message_ids(frame)[:3] == mine
    assert len(frame["messages"]) == 4  # the client_msg_id record is not a message
    assert frame["messages"][-1]["client_msg_id"] == "c-1"


def test_get_history_skips_expired_messages(ask: Ask, dynamodb: Any, seed: Seed) -> None:
    sent = seed(5)
    # DynamoDB deletes expired items up to 48 h late: one whose ttl has passed is still in the table.
    dynamodb.update_item(
        TableName=MESSAGES_TABLE,
        Key={"room_id": {"S": "general"}, "message_id": {"S": sent[2]}},
        UpdateExpression="SET #t = :past",
        ExpressionAttributeNames={"#t": "ttl"},
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    frame = ask()
    assert message_ids(frame) == sent[:2] + sent[3:]


def test_get_history_never_reads_past_the_retention_window(ask: Ask, seed: Seed, dynamodb: Any) -> None:
    old = MessageStore(
        MESSAGES_TABLE, client=dynamodb, retention_days=30, clock=lambda: time.time() - 8 * 86400
    )
    [stale] = seed(1, into=old)  # stored 8 days ago with a longer retention: outside today's 7 days
    [live] = seed(1)
    frame = ask(after=ids.MIN_ID)
    assert message_ids(frame) == [live]
    assert stale < live


def test_get_history_page_is_cut_to_fit_one_frame(
    ask: Ask, seed: Seed, management_api: FakeManagementApi
) -> None:
    sent = seed(60, text="x" * 4000)
    frame = ask(limit=60)
    page = message_ids(frame)
    raw = management_api.delivered[-1][1]
    assert len(raw) <= 128 * 1024
    assert 20 < len(page) < 60 and page == sent[-len(page) :]  # the newest kept, next to the cursor
    assert frame["has_more"] is True
    frame = ask(after=sent[0], limit=60)
    page = message_ids(frame)
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
        *[({"limit": limit}, "invalid_request") for limit in (0, 101, -1, "50", 5.5, True, None)],
        ({"room_id": "other"}, "forbidden_room"),
        ({"room_id": 5}, "forbidden_room"),
        # forbidden_room comes first when several apply
        ({"room_id": "other", "limit": 0}, "forbidden_room"),
    ],
)
def test_get_history_refusals(ask: Ask, fields: dict[str, Any], code: str) -> None:
    frame = ask(**fields)
    assert frame["action"] == "error" and frame["code"] == code and frame["message"]


@pytest.mark.parametrize("limit", [1, 100])
def test_get_history_limit_bounds_are_accepted(ask: Ask, seed: Seed, limit: int) -> None:
    seed(101)
    frame = ask(limit=limit)
    assert len(frame["messages"]) == limit and frame["has_more"] is True


def test_get_history_ignores_unknown_keys_and_null_cursors(ask: Ask, seed: Seed) -> None:
    sent = seed(2)
    frame = ask(before=None, after=None, colour="blue", room_id="general")
    assert message_ids(frame) == sent


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
    ask: Ask, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("ALICExxxxxxxxx0=", "general", "alice", name="Alice")
    send = load_function("send_message")
    body = {"action": "sendMessage", "message": "héllo", "client_msg_id": "c-5"}
    send.handler(message_event(body, connection_id="ALICExxxxxxxxx0="), FakeContext())
    [live] = [f for f in management_api.frames_to(READER) if f["action"] == "message"]
    frame = ask()
    assert frame["messages"] == [live]
    assert json.loads(json.dumps(live))["name"] == "Alice"
