"""Presence in a room past the shard size (3, set by the sqs fixture) is queued as shard jobs by every
handler that causes it; the fanout function posts it. A failure to queue refuses the handshake or undoes the
join (so that trying again announces it), and never keeps leave or $disconnect from removing the user.
Typing is never sharded: in a room past the shard size it is dropped."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import Mock

import pytest
from botocore.exceptions import ClientError

from shared.fanout_queue import EnqueueFailed
from shared.messages import StoreUnavailable
from tests.support.sqs import DropsFirstEntry, bodies, deliver, fanout_context, receive
from tests.unit.chat_driver import Chat, cid, queue_through, requeue

ROOM = "stadium"
NEWCOMER = cid("newcomer")
FRIEND = cid("friend")


@pytest.fixture
def crowd(sqs: Any, chat: Chat) -> list[str]:
    """Six live members of the room, one user each: past the shard size, two jobs."""
    return chat.crowd(ROOM, 6)


def failing_queue() -> Any:
    """An SQS client whose SendMessageBatch always fails (SQS unreachable)."""
    error = ClientError({"Error": {"Code": "InternalError", "Message": "busy"}}, "SendMessageBatch")
    return Mock(send_message_batch=Mock(side_effect=error))


def presence(chat: Chat, connection_id: str) -> list[tuple[str, str]]:
    return [(user, state) for _, user, state in chat.presence(connection_id)]


def change(chat: Chat, function: str) -> int:
    """The newcomer enters or leaves the room through ``function``; the status code it answered."""
    if function == "connect":
        chat.connect("newcomer", "newcomer", ROOM)  # which asserts a 200
        return 200
    if function == "disconnect":
        return int(chat.disconnect(NEWCOMER)["statusCode"])
    return int(chat.send(NEWCOMER, {"action": function, "room_id": ROOM})["statusCode"])


def assert_queued_then_posted(chat: Chat, sqs: Any, crowd: list[str], expected: tuple[str, str]) -> None:
    """Nothing was posted by the handler; its jobs, through fanout, reach every member once."""
    assert all(presence(chat, member) == [] for member in crowd)
    jobs = bodies(sqs.client, sqs.url)
    assert sorted(len(job["members"]) for job in jobs) == [3, 3]
    assert sorted(m[0] for job in jobs for m in job["members"]) == sorted(crowd)
    requeue(sqs, jobs)
    answers = deliver(sqs.client, sqs.url, chat.fresh("fanout"), fanout_context())
    assert all(answer == {"batchItemFailures": []} for answer in answers)
    assert all(presence(chat, member) == [expected] for member in crowd)


# What the newcomer is in before, what its handler answers it, the presence the room hears.
CHANGES = {
    "connect": ((), [], "online"),
    "join": (("lobby",), ["joined"], "online"),
    "leave": ((ROOM, "lobby"), ["left"], "offline"),
    "disconnect": ((ROOM,), [], "offline"),
}


@pytest.mark.parametrize("function", list(CHANGES))
def test_each_handler_queues_the_presence_of_a_large_room_and_answers_at_once(
    chat: Chat, sqs: Any, crowd: list[str], function: str
) -> None:
    rooms, answer, state = CHANGES[function]
    if rooms:
        chat.put(NEWCOMER, rooms[0], "newcomer", rooms=rooms[1:], live=function != "disconnect")
    assert change(chat, function) == 200
    assert sum(chat.api.attempts.values()) == len(answer)  # not one presence post in the handler
    assert (NEWCOMER in chat.record_ids()) == (function != "disconnect")
    assert_queued_then_posted(chat, sqs, crowd, ("newcomer", state))
    assert [f["action"] for f in chat.frames(NEWCOMER)] == answer  # the newcomer is not told of itself


def test_up_to_the_shard_size_presence_is_posted_by_the_handler(chat: Chat, sqs: Any) -> None:
    members = chat.crowd(ROOM, 3)
    change(chat, "connect")
    assert all(presence(chat, member) == [("newcomer", "online")] for member in members)
    assert receive(sqs.client, sqs.url) == []


def test_connect_whose_online_cannot_be_queued_is_refused_and_leaves_nothing(
    chat: Chat, sqs: Any, crowd: list[str]
) -> None:
    queue_through(chat.function("connect"), failing_queue())
    with pytest.raises(EnqueueFailed):  # Lambda's error: API Gateway refuses the handshake
        change(chat, "connect")
    assert NEWCOMER not in chat.record_ids()
    assert chat.rooms_of(NEWCOMER) == set()
    assert receive(sqs.client, sqs.url) == []
    # Connecting again once the queue works announces online: the presence item was undone too.
    chat.fresh("connect")
    change(chat, "connect")
    assert_queued_then_posted(chat, sqs, crowd, ("newcomer", "online"))


def test_connect_whose_online_was_partly_queued_sends_those_members_offline_after_it(
    chat: Chat, sqs: Any, crowd: list[str]
) -> None:
    queue_through(chat.function("connect"), DropsFirstEntry(sqs.client))
    with pytest.raises(EnqueueFailed):
        change(chat, "connect")
    assert NEWCOMER not in chat.record_ids()
    # Of each two jobs (the same members, in the room's order), the second was queued: online, then
    # offline once the connect was undone.
    jobs = bodies(sqs.client, sqs.url)
    assert [json.loads(job["data"])["state"] for job in jobs] == ["online", "offline"]
    assert jobs[0]["members"] == jobs[1]["members"]
    requeue(sqs, jobs)
    deliver(sqs.client, sqs.url, chat.function("fanout"), fanout_context())
    told = {m[0] for m in jobs[0]["members"]}
    for member in crowd:
        expected = [("newcomer", "online"), ("newcomer", "offline")] if member in told else []
        assert presence(chat, member) == expected


def test_join_whose_online_cannot_be_queued_is_undone_with_an_error_frame(
    chat: Chat, sqs: Any, crowd: list[str]
) -> None:
    chat.put(NEWCOMER, "lobby", "newcomer")
    queue_through(chat.function("join"), failing_queue())
    assert change(chat, "join") == 500
    [error] = chat.frames(NEWCOMER)  # no "joined"
    assert (error["action"], error["code"]) == ("error", "internal")
    assert "join was undone" in error["message"]
    assert chat.rooms_of(NEWCOMER) == {"lobby"}
    assert receive(sqs.client, sqs.url) == []
    # Joining again once the queue works joins, and the room hears online.
    chat.api.reset()
    chat.fresh("join")
    assert change(chat, "join") == 200
    assert chat.rooms_of(NEWCOMER) == {"lobby", ROOM}
    assert_queued_then_posted(chat, sqs, crowd, ("newcomer", "online"))


def test_leave_whose_offline_cannot_be_queued_still_leaves(chat: Chat, sqs: Any, crowd: list[str]) -> None:
    chat.put(NEWCOMER, ROOM, "newcomer", rooms=("lobby",))
    queue_through(chat.function("leave"), failing_queue())
    assert change(chat, "leave") == 200
    assert [f["action"] for f in chat.frames(NEWCOMER)] == ["left"]
    assert chat.rooms_of(NEWCOMER) == {"lobby"}


def test_disconnect_removes_every_membership_before_announcing_and_a_failed_room_stops_no_other(
    chat: Chat, sqs: Any, crowd: list[str]
) -> None:
    # In the large room (first in order: "stadium" < "tiny") and in a small one posted inline.
    chat.put(NEWCOMER, ROOM, "newcomer", rooms=("tiny",), live=False)
    chat.put(FRIEND, "tiny", "friend")
    module = chat.function("disconnect")
    queue_through(module, failing_queue())
    # What the handler did, in order: the calls of both, recorded by one parent mock.
    steps = Mock()
    module.service.memberships.remove = steps.remove = Mock(wraps=module.service.memberships.remove)
    module.service.broadcast_room = steps.announce = Mock(wraps=module.service.broadcast_room)
    assert change(chat, "disconnect") == 200
    rooms = [(step, args[0] if step == "remove" else args[1]) for step, args, _ in steps.mock_calls]
    assert rooms == [("remove", "stadium"), ("remove", "tiny"), ("announce", "stadium"), ("announce", "tiny")]
    assert chat.rooms_of(NEWCOMER) == set()
    assert NEWCOMER not in chat.record_ids()
    assert presence(chat, FRIEND) == [("newcomer", "offline")]


def test_disconnect_whose_store_fails_in_one_room_still_leaves_and_announces_the_others(
    chat: Chat, sqs: Any, crowd: list[str]
) -> None:
    chat.put(NEWCOMER, ROOM, "newcomer", rooms=("tiny",), live=False)
    chat.put(FRIEND, "tiny", "friend")
    store = chat.function("disconnect").service.memberships
    remove = store.remove

    def failing_in_the_stadium(room_id: str, *args: Any) -> Any:
        if room_id == ROOM:
            raise StoreUnavailable("could not update the room: ProvisionedThroughputExceededException")
        return remove(room_id, *args)

    store.remove = failing_in_the_stadium
    with pytest.raises(StoreUnavailable):  # counted and raised by the handler, after the other rooms
        change(chat, "disconnect")
    assert chat.rooms_of(NEWCOMER) == {ROOM}  # left to its TTL
    assert presence(chat, FRIEND) == [("newcomer", "offline")]


@pytest.mark.parametrize(
    ("size", "posted"), [(6, False), (3, True)], ids=["past-the-shard-size-dropped", "up-to-it-posted"]
)
def test_typing_is_never_sharded(chat: Chat, sqs: Any, size: int, posted: bool) -> None:
    typist, *others = chat.crowd(ROOM, size)
    assert chat.send(typist, {"action": "typing", "room_id": ROOM})["statusCode"] == 200
    assert sum(chat.api.attempts.values()) == (len(others) if posted else 0)  # never to the typist
    assert all([f["action"] for f in chat.frames(member)] == ["typing"] * posted for member in others)
    assert receive(sqs.client, sqs.url) == []
