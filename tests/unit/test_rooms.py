"""Several rooms per connection, presence, listMembers and typing (docs/rooms.md), through the handlers;
connections are made by the real $connect handler, so records, memberships and presence are production's."""

from __future__ import annotations

import time
from typing import Any
from unittest.mock import Mock

import pytest

from tests.support.records import MEMBERSHIPS_TABLE, TABLE, table_items
from tests.unit.chat_driver import Chat, cid


def test_one_connection_in_three_rooms_receives_each_rooms_messages_and_nothing_else(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1")
    for room in ("r2", "r3"):
        chat.send(alice, {"action": "join", "room_id": room})
    bob = chat.connect("bob", "bob", "r2")
    carol = chat.connect("carol", "carol", "r4")
    assert [f["room_id"] for f in chat.frames(alice, "joined")] == ["r2", "r3"]
    for room in ("r1", "r2", "r3"):
        chat.send(alice, {"action": "sendMessage", "room_id": room, "message": f"in {room}"})
    chat.send(bob, {"action": "sendMessage", "room_id": "r2", "message": "bob in r2"})
    chat.send(carol, {"action": "sendMessage", "message": "carol in r4"})
    assert chat.messages(alice) == [("r1", "in r1"), ("r2", "in r2"), ("r3", "in r3"), ("r2", "bob in r2")]
    assert chat.messages(bob) == [("r2", "in r2"), ("r2", "bob in r2")]
    assert chat.messages(carol) == [("r4", "carol in r4")]


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "join"},
        {"action": "join", "room_id": ""},
        {"action": "join", "room_id": "has space"},
        {"action": "join", "room_id": "x" * 65},
        {"action": "join", "room_id": "a#b"},
        {"action": "join", "room_id": "ok\n"},
        {"action": "join", "room_id": 7},
        {"action": "leave", "room_id": None},
    ],
)
def test_join_or_leave_with_a_bad_room_id_is_invalid_request(chat: Chat, frame: dict[str, Any]) -> None:
    alice = chat.connect("alice", "alice", "r1")
    chat.send(alice, frame)
    [error] = chat.frames(alice, "error")
    assert error["code"] == "invalid_request"
    assert chat.memberships() == {("r1", f"alice#{alice}")}


def test_join_refused_by_the_rooms_claim_is_forbidden_room(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1", rooms=["r1", "r2"])
    chat.send(alice, {"action": "join", "room_id": "secret"})
    [error] = chat.frames(alice, "error")
    assert error["code"] == "forbidden_room"
    chat.send(alice, {"action": "join", "room_id": "r2"})
    assert [f["room_id"] for f in chat.frames(alice, "joined")] == ["r2"]
    assert chat.memberships() == {("r1", f"alice#{alice}"), ("r2", f"alice#{alice}")}


def test_join_beyond_max_rooms_per_connection_is_too_many_rooms(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ROOMS_PER_CONNECTION", "3")
    alice = chat.connect("alice", "alice", "r1")
    for room in ("r2", "r3", "r4"):
        chat.send(alice, {"action": "join", "room_id": room})
    assert [f["room_id"] for f in chat.frames(alice, "joined")] == ["r2", "r3"]
    [error] = chat.frames(alice, "error")
    assert error["code"] == "too_many_rooms"
    # Joining a room it is already in is no error, even at the limit; leaving one frees a place.
    chat.send(alice, {"action": "join", "room_id": "r3"})
    chat.send(alice, {"action": "leave", "room_id": "r1"})
    chat.send(alice, {"action": "join", "room_id": "r4"})
    assert [f["room_id"] for f in chat.frames(alice, "joined")] == ["r2", "r3", "r3", "r4"]
    assert len(chat.frames(alice, "error")) == 1


def test_join_twice_and_leaving_a_room_one_is_not_in_are_not_errors(chat: Chat) -> None:
    observer = chat.connect("obs", "olga", "r2")
    alice = chat.connect("alice", "alice", "r1")
    chat.send(alice, {"action": "join", "room_id": "r2"})
    chat.send(alice, {"action": "join", "room_id": "r2"})
    chat.send(alice, {"action": "leave", "room_id": "r9"})
    assert [f["action"] for f in chat.frames(alice)] == ["joined", "joined", "left"]
    assert chat.presence(observer) == [("r2", "alice", "online")]


def test_send_message_needs_a_room_the_connection_is_in(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1")
    chat.send(alice, {"action": "join", "room_id": "r2"})
    chat.send(alice, {"action": "sendMessage", "room_id": "r3", "message": "no"})
    chat.send(alice, {"action": "leave", "room_id": "r1"})
    chat.send(alice, {"action": "sendMessage", "message": "first room, left"})
    chat.send(alice, {"action": "sendMessage", "room_id": "r1", "message": "left"})
    for action in ("getHistory", "listMembers", "typing"):
        chat.send(alice, {"action": action})
    assert [f["code"] for f in chat.frames(alice, "error")] == ["forbidden_room"] * 6
    chat.send(alice, {"action": "sendMessage", "room_id": "r2", "message": "yes"})
    assert chat.messages(alice) == [("r2", "yes")]


def test_error_precedence_holds_for_the_new_actions(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "r1")
    chat.send(alice, "not json")
    chat.send(alice, {"action": "dance", "room_id": "bad room"})
    chat.send(alice, {"action": "sendMessage", "room_id": "r9", "message": ""})
    chat.send(alice, {"action": "sendDirect", "to_user_id": "", "message": "x" * 5000})
    chat.send(alice, {"action": "sendDirect", "to_user_id": "bob", "message": "x" * 5000})
    codes = [f["code"] for f in chat.frames(alice, "error")]
    assert codes == [
        "invalid_json",
        "unknown_action",
        "forbidden_room",
        "invalid_request",
        "message_too_large",
    ]


def test_presence_follows_a_users_first_and_last_connection_across_two_devices(chat: Chat) -> None:
    observer = chat.connect("obs", "olga", "room")
    phone = chat.connect("phone", "alice", "room")
    assert chat.presence(observer) == [("room", "alice", "online")]
    laptop = chat.connect("laptop", "alice", "lobby")
    chat.send(laptop, {"action": "join", "room_id": "room"})  # a second device: nothing changes
    chat.disconnect(phone)
    assert chat.presence(observer) == [("room", "alice", "online")]
    chat.send(laptop, {"action": "leave", "room_id": "room"})  # the last one leaves
    assert chat.presence(observer) == [("room", "alice", "online"), ("room", "alice", "offline")]
    chat.send(laptop, {"action": "join", "room_id": "room"})
    chat.disconnect(laptop)
    assert chat.presence(observer) == [("room", "alice", "online"), ("room", "alice", "offline")] * 2
    assert chat.frames(observer, "presence")[0]["name"] == "Alice"
    assert chat.memberships() == {("room", f"olga#{observer}")}


def test_list_members_lists_distinct_users_across_every_page(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "room")
    chat.connect("alice2", "alice", "room")
    for n in range(5):
        chat.connect(f"user{n}", f"user{n}", "room")
    chat.connect("other", "zed", "elsewhere")
    chat.function("list_members").service.memberships.page_size = 2  # 8 memberships: 4 pages
    chat.send(alice, {"action": "listMembers", "room_id": "room"})
    [frame] = chat.frames(alice, "members")
    assert frame["room_id"] == "room"
    assert frame["members"] == [{"user_id": "alice", "name": "Alice"}] + [
        {"user_id": f"user{n}", "name": f"User{n}"} for n in range(5)
    ]


def test_typing_reaches_the_other_users_only_and_at_most_once_per_two_seconds(chat: Chat) -> None:
    alice = chat.connect("alice", "alice", "room")
    alice_tab = chat.connect("alicetab", "alice", "room")
    bob = chat.connect("bob", "bob", "room")
    chat.connect("carol", "carol", "elsewhere")
    now = [1_000_000.0]
    chat.function("typing").service.memberships._clock = lambda: now[0]
    chat.send(alice, {"action": "typing", "room_id": "room"})
    chat.send(alice, {"action": "typing"})  # within 2 s: dropped silently
    now[0] += 1.9
    chat.send(alice, {"action": "typing"})
    chat.send(alice_tab, {"action": "typing"})  # another connection has its own 2 s
    now[0] += 0.2
    chat.send(alice, {"action": "typing"})
    typing = {"action": "typing", "room_id": "room", "user_id": "alice", "name": "Alice"}
    assert chat.frames(bob, "typing") == [typing] * 3
    assert chat.frames(alice, "typing") == [] and chat.frames(alice_tab, "typing") == []
    assert chat.frames(alice, "error") == []
    assert chat.frames(cid("carol")) == []


def test_a_410_found_by_a_broadcast_removes_every_membership_of_that_connection(chat: Chat) -> None:
    observer = chat.connect("obs", "olga", "r1")
    chat.send(observer, {"action": "join", "room_id": "r2"})
    dead = chat.connect("dead", "alice", "r1")
    chat.send(dead, {"action": "join", "room_id": "r2"})
    chat.api.live.discard(dead)  # closed without a $disconnect
    chat.api.reset()
    chat.send(observer, {"action": "sendMessage", "room_id": "r1", "message": "hello"})
    assert dead not in chat.record_ids()
    assert chat.memberships() == {("r1", f"olga#{observer}"), ("r2", f"olga#{observer}")}
    assert sorted(chat.presence(observer)) == [("r1", "alice", "offline"), ("r2", "alice", "offline")]


def test_disconnect_racing_a_reconnect_never_removes_the_live_connection(chat: Chat) -> None:
    observer = chat.connect("obs", "olga", "room")
    old = chat.connect("old", "alice", "room")
    new = chat.connect("new", "alice", "room")  # the reconnect lands before the old $disconnect
    chat.disconnect(old)
    assert chat.memberships() == {("room", f"olga#{observer}"), ("room", f"alice#{new}")}
    assert chat.record_ids() == {observer, new}
    assert chat.presence(observer) == [("room", "alice", "online")]
    chat.send(observer, {"action": "sendMessage", "message": "still there?"})
    assert chat.messages(new) == [("room", "still there?")]
    # A late 410 for the old connection (a broadcast that read it before it left) changes nothing either.
    offline: list[tuple[str, str, str | None]] = []
    service = chat.function("send_message").service
    assert service._clean_up(old, "alice", since=0, room="room", offline=offline)
    assert offline == []
    assert chat.memberships() == {("room", f"olga#{observer}"), ("room", f"alice#{new}")}
    assert chat.presence(observer) == [("room", "alice", "online")]


@pytest.mark.parametrize("function", ["connect", "join", "leave", "typing", "disconnect"])
def test_every_broadcast_removes_a_gone_member_and_announces_it_offline(chat: Chat, function: str) -> None:
    observer = chat.connect("obs", "olga", "room")
    actor = chat.connect("actor", "alice", "lobby")
    if function in ("leave", "typing", "disconnect"):
        chat.send(actor, {"action": "join", "room_id": "room"})
    dead = chat.connect("dead", "dora", "room", live=False)  # its online reached only the observer
    assert dead in chat.record_ids()
    if function == "connect":
        chat.connect("actor2", "amy", "room")
    elif function == "disconnect":
        chat.disconnect(actor)
    else:
        chat.send(actor, {"action": function, "room_id": "room"})
    assert dead not in chat.record_ids()
    assert ("room", f"dora#{dead}") not in chat.memberships()
    assert ("room", "dora", "offline") in chat.presence(observer)


def test_the_rate_limit_counts_join_leave_list_and_typing_frames_per_user(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "0.01")
    monkeypatch.setenv("RATE_LIMIT_BURST", "4")
    tabs = [chat.connect(f"tab{n}", "alice", "room") for n in range(3)]
    frames = [
        {"action": "join", "room_id": "a"},
        {"action": "listMembers"},
        {"action": "leave", "room_id": "a"},
        {"action": "typing"},
        {"action": "join", "room_id": "b"},
        {"action": "listMembers"},
    ]
    for n, frame in enumerate(frames):
        chat.send(tabs[n % 3], frame)
    answered = [f["action"] for tab in tabs for f in chat.frames(tab) if f["action"] != "presence"]
    assert sorted(answered) == ["error", "joined", "left", "members"]
    assert [e["code"] for tab in tabs for e in chat.frames(tab, "error")] == ["rate_limited"]


def test_connect_keeps_the_rooms_claim_and_the_first_room_on_the_record(chat: Chat) -> None:
    chat.connect("alice", "alice", "r1", rooms=["r1", "r2"])
    [record] = table_items(chat.dynamodb, TABLE)
    assert record["room_id"] == {"S": "r1"}
    assert record["rooms"] == {"SS": ["r1"]}
    assert [v["S"] for v in record["granted_rooms"]["L"]] == ["r1", "r2"]
    memberships = list(table_items(chat.dynamodb, MEMBERSHIPS_TABLE))
    presence = [p["connections"]["SS"] for p in memberships if p["room_id"]["S"] == "presence#r1"]
    assert presence == [[cid("alice")]]
    assert all("ttl" in item for item in memberships)


def test_a_410_within_the_connect_grace_keeps_the_connection(chat: Chat) -> None:
    # API Gateway answers 410 for a connection whose $connect is still running: not a closed one.
    observer = chat.connect("obs", "olga", "room")
    slow = chat.connect("slow", "sam", "room", live=False)
    chat.function("send_message").service._clock = time.time  # no time has passed since that $connect
    chat.send(observer, {"action": "sendMessage", "message": "hi"})
    assert slow in chat.record_ids()
    assert ("room", f"sam#{slow}") in chat.memberships()


def test_presence_at_connect_is_posted_with_the_broadcast_pool(chat: Chat) -> None:
    # A room of N members costs $connect N posts within its 10 s: one after another would not fit.
    for n in range(8):
        chat.connect(f"member{n}", f"member{n}", "big")
    chat.api.latency = 0.1
    chat.api.reset()
    chat.api.max_in_flight = 0
    chat.connect("late", "latecomer", "big")
    assert len(chat.api.delivered) == 8
    assert chat.api.max_in_flight > 1


def test_a_join_that_failed_after_updating_the_record_is_completed_by_joining_again(chat: Chat) -> None:
    observer = chat.connect("obs", "olga", "room")
    alice = chat.connect("alice", "alice", "lobby")
    store = chat.function("join").service.memberships
    store.add = Mock(side_effect=RuntimeError("DynamoDB went away"))
    chat.send(alice, {"action": "join", "room_id": "room"})
    assert [f["code"] for f in chat.frames(alice, "error")] == ["internal"]
    del store.add  # the store's own method again
    chat.send(alice, {"action": "join", "room_id": "room"})
    assert ("room", f"alice#{alice}") in chat.memberships()
    assert chat.presence(observer) == [("room", "alice", "online")]
    chat.send(observer, {"action": "sendMessage", "message": "now you hear me"})
    assert chat.messages(alice) == [("room", "now you hear me")]
