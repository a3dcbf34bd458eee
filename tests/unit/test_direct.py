"""sendDirect and a direct conversation's history (docs/rooms.md), through the handlers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.records import MESSAGES_TABLE, record_ids, table_items
from tests.unit.chat_driver import Chat, cid


def direct(**fields: Any) -> dict[str, Any]:
    return {"action": "sendDirect", **fields}


def dms(chat: Chat) -> list[dict[str, Any]]:
    """The stored items of direct conversations."""
    return [
        item for item in table_items(chat.dynamodb, MESSAGES_TABLE) if item["room_id"]["S"].startswith("dm#")
    ]


def test_a_direct_message_reaches_the_recipients_tabs_and_the_senders_other_tab_only(chat: Chat) -> None:
    alice, alice_tab = chat.connect("alice", "alice", "r1"), chat.connect("alicetab", "alice", "r2")
    bob, bob_tab = chat.connect("bob", "bob", "r1"), chat.connect("bobtab", "bob", "r3")
    carol = chat.connect("carol", "carol", "r1")
    chat.send(alice, direct(to_user_id="bob", message="hi bob", client_msg_id="c-1"))
    [ack] = chat.frames(alice, "ack")
    assert ack == {
        "action": "ack",
        "client_msg_id": "c-1",
        "message_id": ack["message_id"],
        "to_user_id": "bob",
    }
    for connection_id in (bob, bob_tab, alice_tab):
        [frame] = chat.frames(connection_id, "direct")
        assert frame == {
            "action": "direct",
            "from_user_id": "alice",
            "to_user_id": "bob",
            "name": "Alice",
            "message": "hi bob",
            "message_id": ack["message_id"],
            "timestamp": frame["timestamp"],
            "client_msg_id": "c-1",
        }
    assert chat.frames(alice, "direct") == [] and chat.frames(carol, "direct") == []


def test_a_direct_message_is_stored_under_the_conversations_own_key_and_read_by_both(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1")
    bob = chat.connect("bob", "bob", "r1")
    chat.send(alice, direct(to_user_id="bob", message="one"))
    chat.send(bob, direct(to_user_id="alice", message="two"))
    chat.send(alice, {"action": "sendMessage", "message": "in the room"})
    keys = {item["room_id"]["S"] for item in table_items(chat.dynamodb, MESSAGES_TABLE)}
    assert "dm#5:alice#bob" in keys and "r1" in keys
    chat.send(alice, {"action": "getHistory", "with_user_id": "bob"})
    chat.send(bob, {"action": "getHistory", "with_user_id": "alice", "limit": 1})
    [mine], [theirs] = chat.frames(alice, "history"), chat.frames(bob, "history")
    assert mine["with_user_id"] == "bob" and "room_id" not in mine
    assert [(m["from_user_id"], m["message"]) for m in mine["messages"]] == [("alice", "one"), ("bob", "two")]
    assert [m["message"] for m in theirs["messages"]] == ["two"] and theirs["has_more"] is True
    chat.send(alice, {"action": "getHistory"})
    [_, room] = chat.frames(alice, "history")
    assert [m["message"] for m in room["messages"]] == ["in the room"]


def test_a_repeated_client_msg_id_stores_one_direct_message(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1")
    bob = chat.connect("bob", "bob", "r1")
    frame = direct(to_user_id="bob", message="once", client_msg_id="c-9")
    chat.send(alice, frame)
    chat.send(alice, frame)
    first, second = chat.frames(alice, "ack")
    assert first["message_id"] == second["message_id"]
    assert {f["message_id"] for f in chat.frames(bob, "direct")} == {first["message_id"]}
    assert len(dms(chat)) == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (direct(message="hi"), "invalid_request"),
        (direct(to_user_id="", message="hi"), "invalid_request"),
        (direct(to_user_id=5, message="hi"), "invalid_request"),
        (direct(to_user_id="bo\nb", message="hi"), "invalid_request"),
        (direct(to_user_id="x" * 129, message="hi"), "invalid_request"),
        # A lone surrogate is valid JSON but not text: the store would fail (internal) without the check.
        (direct(to_user_id="\ud800", message="hi"), "invalid_request"),
        (direct(to_user_id="alice", message="me"), "invalid_request"),
        (direct(to_user_id="bob", message="  "), "invalid_message"),
        (direct(to_user_id="bob", message="x" * 4097), "message_too_large"),
        (direct(to_user_id="bob", message="x", client_msg_id="no way"), "invalid_request"),
        ({"action": "getHistory", "with_user_id": "alice"}, "invalid_request"),
        ({"action": "getHistory", "with_user_id": ""}, "invalid_request"),
        ({"action": "getHistory", "with_user_id": "b\udfffb"}, "invalid_request"),
        ({"action": "getHistory", "with_user_id": "bob", "room_id": "r1"}, "invalid_request"),
        ({"action": "getHistory", "with_user_id": "bob", "limit": 0}, "invalid_request"),
    ],
)
def test_bad_direct_frames_are_refused_and_store_nothing(
    chat: Chat, frame: dict[str, Any], code: str
) -> None:
    alice = chat.connect("alice", "alice", "r1")
    bob = chat.connect("bob", "bob", "r1")
    chat.send(alice, frame)
    [error] = chat.frames(alice, "error")
    assert error["code"] == code
    assert chat.frames(bob, "direct") == []
    assert dms(chat) == []


def test_a_direct_message_to_someone_offline_is_stored_for_later(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1")
    chat.send(alice, direct(to_user_id="nobody-yet", message="when you come"))
    assert chat.frames(alice, "error") == []
    chat.send(alice, {"action": "getHistory", "with_user_id": "nobody-yet"})
    [history] = chat.frames(alice, "history")
    assert [m["message"] for m in history["messages"]] == ["when you come"]


def test_a_gone_recipient_connection_is_removed_from_its_rooms(chat: Chat) -> None:
    observer = chat.connect("obs", "olga", "r1")
    alice = chat.connect("alice", "alice", "r2")
    dead = chat.connect("bobdead", "bob", "r1", live=False)
    chat.send(alice, direct(to_user_id="bob", message="there?"))
    assert dead not in record_ids(chat.dynamodb)
    assert ("r1", "bob", "offline") in chat.presence(observer)
    assert cid("obs") in record_ids(chat.dynamodb)
