"""Presence in a room past the shard size is queued as shard jobs, as a message is, by every handler that
causes it ($connect, join, leave, $disconnect); the fanout function posts it. A failure to queue refuses
the handshake or undoes the join (so that trying again announces it), and never keeps leave or
$disconnect from removing the user. Typing is never sharded: in a room past the shard size it is dropped.
The sqs fixture sets FANOUT_SHARD_SIZE to 3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.testing import FakeContext, FakeManagementApi, make_token
from shared.fanout_queue import EnqueueFailed
from shared.messages import StoreUnavailable
from tests.conftest import load_function
from tests.support.events import connect_event, disconnect_event, message_event
from tests.support.records import MEMBERSHIPS_TABLE, put_record, record_ids, table_items
from tests.support.sqs import DropsFirstEntry, bodies, deliver, fanout_context, receive

ROOM = "stadium"
NEWCOMER = "NEWCOMERxxxxxx0="


def member_ids(n: int) -> list[str]:
    return [f"M{i:014d}0=" for i in range(n)]


@pytest.fixture
def crowd(sqs: Any, dynamodb: Any, management_api: FakeManagementApi) -> list[str]:
    """Six live members of the room, one user each: past the shard size (3), two jobs."""
    members = member_ids(6)
    for i, cid in enumerate(members):
        put_record(dynamodb, cid, ROOM, f"user{i}")
        management_api.live.add(cid)
    return members


def presence(api: FakeManagementApi, cid: str) -> list[tuple[str, str]]:
    return [(f["user_id"], f["state"]) for f in api.frames_to(cid) if f["action"] == "presence"]


def memberships(dynamodb: Any, cid: str) -> set[str]:
    return {
        item["room_id"]["S"]
        for item in table_items(dynamodb, MEMBERSHIPS_TABLE)
        if item.get("connection_id", {}).get("S") == cid
    }


def connect(module: Any, cid: str = NEWCOMER, user: str = "newcomer") -> dict[str, Any]:
    event = connect_event({"token": make_token(user), "room_id": ROOM}, connection_id=cid)
    response: dict[str, Any] = module.handler(event, FakeContext())
    return response


def frame(module: Any, cid: str, body: dict[str, Any]) -> dict[str, Any]:
    event = message_event(body, connection_id=cid, route=str(body["action"]))
    response: dict[str, Any] = module.handler(event, FakeContext())
    return response


def assert_queued_then_posted(
    sqs: Any, api: FakeManagementApi, crowd: list[str], expected: tuple[str, str]
) -> None:
    """Nothing was posted by the handler; its jobs, through fanout, reach every member once."""
    assert all(presence(api, cid) == [] for cid in crowd)
    jobs = bodies(sqs.client, sqs.url)
    assert sorted(len(job["members"]) for job in jobs) == [3, 3]
    assert sorted(m[0] for job in jobs for m in job["members"]) == sorted(crowd)
    for job in jobs:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(job))
    answers = deliver(sqs.client, sqs.url, load_function("fanout"), fanout_context())
    assert all(answer == {"batchItemFailures": []} for answer in answers)
    for cid in crowd:
        assert presence(api, cid) == [expected]


class FailingQueue:
    """An SQS client whose SendMessageBatch always fails (SQS unreachable)."""

    def __init__(self, client: Any) -> None:
        self.meta = client.meta

    def send_message_batch(self, **params: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "busy"}}, "SendMessageBatch")


def fail_queue(module: Any, sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module.service.fanout, "_client", FailingQueue(sqs.client))
    monkeypatch.setattr(module.service.fanout, "_sleep", lambda seconds: None)


# -- each handler shards its presence ---------------------------------------------------------------


def test_connect_queues_the_online_of_a_large_room_and_answers_at_once(
    sqs: Any, crowd: list[str], management_api: FakeManagementApi
) -> None:
    management_api.live.add(NEWCOMER)
    assert connect(load_function("connect"))["statusCode"] == 200
    assert sum(management_api.attempts.values()) == 0  # not one post in the handshake
    assert_queued_then_posted(sqs, management_api, crowd, ("newcomer", "online"))
    assert presence(management_api, NEWCOMER) == []  # the newcomer is not told of itself


def test_join_queues_the_online_of_a_large_room(
    sqs: Any, crowd: list[str], dynamodb: Any, management_api: FakeManagementApi
) -> None:
    put_record(dynamodb, NEWCOMER, "lobby", "newcomer")
    management_api.live.add(NEWCOMER)
    response = frame(load_function("join"), NEWCOMER, {"action": "join", "room_id": ROOM})
    assert response["statusCode"] == 200
    assert [f["action"] for f in management_api.frames_to(NEWCOMER)] == ["joined"]
    assert_queued_then_posted(sqs, management_api, crowd, ("newcomer", "online"))


def test_leave_queues_the_offline_of_a_large_room(
    sqs: Any, crowd: list[str], dynamodb: Any, management_api: FakeManagementApi
) -> None:
    put_record(dynamodb, NEWCOMER, ROOM, "newcomer", rooms=("lobby",))
    management_api.live.add(NEWCOMER)
    response = frame(load_function("leave"), NEWCOMER, {"action": "leave", "room_id": ROOM})
    assert response["statusCode"] == 200
    assert [f["action"] for f in management_api.frames_to(NEWCOMER)] == ["left"]
    assert_queued_then_posted(sqs, management_api, crowd, ("newcomer", "offline"))


def test_disconnect_queues_the_offline_of_a_large_room(
    sqs: Any, crowd: list[str], dynamodb: Any, management_api: FakeManagementApi
) -> None:
    put_record(dynamodb, NEWCOMER, ROOM, "newcomer")
    module = load_function("disconnect")
    assert module.handler(disconnect_event(connection_id=NEWCOMER), FakeContext())["statusCode"] == 200
    assert NEWCOMER not in record_ids(dynamodb)
    assert_queued_then_posted(sqs, management_api, crowd, ("newcomer", "offline"))


def test_up_to_the_shard_size_presence_is_posted_by_the_handler(
    sqs: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    for i, cid in enumerate(member_ids(3)):
        put_record(dynamodb, cid, ROOM, f"user{i}")
        management_api.live.add(cid)
    assert connect(load_function("connect"))["statusCode"] == 200
    assert all(presence(management_api, cid) == [("newcomer", "online")] for cid in member_ids(3))
    assert receive(sqs.client, sqs.url) == []


# -- a failure to queue -----------------------------------------------------------------------------


def test_connect_whose_online_cannot_be_queued_is_refused_and_leaves_nothing(
    sqs: Any,
    crowd: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = load_function("connect")
    fail_queue(module, sqs, monkeypatch)
    with pytest.raises(EnqueueFailed):  # Lambda's error: API Gateway refuses the handshake
        connect(module)
    assert NEWCOMER not in record_ids(dynamodb)
    assert memberships(dynamodb, NEWCOMER) == set()
    assert receive(sqs.client, sqs.url) == []

    # Connecting again once the queue works announces online: the presence item was undone too.
    assert connect(load_function("connect"))["statusCode"] == 200
    assert_queued_then_posted(sqs, management_api, crowd, ("newcomer", "online"))


def test_connect_whose_online_was_partly_queued_sends_those_members_offline_after_it(
    sqs: Any,
    crowd: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = load_function("connect")
    monkeypatch.setattr(module.service.fanout, "_client", DropsFirstEntry(sqs.client))
    monkeypatch.setattr(module.service.fanout, "_sleep", lambda seconds: None)
    with pytest.raises(EnqueueFailed):
        connect(module)
    assert NEWCOMER not in record_ids(dynamodb)
    # Of each two jobs (the same members, in the room's order), the second was queued: online, then
    # offline once the connect was undone.
    jobs = bodies(sqs.client, sqs.url)
    assert [json.loads(job["data"])["state"] for job in jobs] == ["online", "offline"]
    assert jobs[0]["members"] == jobs[1]["members"]
    for job in jobs:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(job))
    deliver(sqs.client, sqs.url, load_function("fanout"), fanout_context())
    told = {m[0] for m in jobs[0]["members"]}
    for cid in crowd:
        expected = [("newcomer", "online"), ("newcomer", "offline")] if cid in told else []
        assert presence(management_api, cid) == expected


def test_join_whose_online_cannot_be_queued_is_undone_with_an_error_frame(
    sqs: Any,
    crowd: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put_record(dynamodb, NEWCOMER, "lobby", "newcomer")
    management_api.live.add(NEWCOMER)
    module = load_function("join")
    fail_queue(module, sqs, monkeypatch)
    assert frame(module, NEWCOMER, {"action": "join", "room_id": ROOM})["statusCode"] == 500
    [error] = management_api.frames_to(NEWCOMER)  # no "joined"
    assert (error["action"], error["code"]) == ("error", "internal")
    assert "join was undone" in error["message"]
    assert memberships(dynamodb, NEWCOMER) == {"lobby"}
    assert receive(sqs.client, sqs.url) == []

    # Joining again once the queue works joins, and the room hears online.
    management_api.reset()
    assert frame(load_function("join"), NEWCOMER, {"action": "join", "room_id": ROOM})["statusCode"] == 200
    assert memberships(dynamodb, NEWCOMER) == {"lobby", ROOM}
    assert_queued_then_posted(sqs, management_api, crowd, ("newcomer", "online"))


def test_leave_whose_offline_cannot_be_queued_still_leaves(
    sqs: Any,
    crowd: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put_record(dynamodb, NEWCOMER, ROOM, "newcomer", rooms=("lobby",))
    management_api.live.add(NEWCOMER)
    module = load_function("leave")
    fail_queue(module, sqs, monkeypatch)
    assert frame(module, NEWCOMER, {"action": "leave", "room_id": ROOM})["statusCode"] == 200
    assert [f["action"] for f in management_api.frames_to(NEWCOMER)] == ["left"]
    assert memberships(dynamodb, NEWCOMER) == {"lobby"}


def test_disconnect_removes_every_membership_before_announcing_and_a_failed_room_stops_no_other(
    sqs: Any,
    crowd: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In the large room (first in order: "stadium" < "tiny") and in a small one posted inline.
    put_record(dynamodb, NEWCOMER, ROOM, "newcomer", rooms=("tiny",))
    put_record(dynamodb, "FRIENDxxxxxxxx0=", "tiny", "friend")
    management_api.live.add("FRIENDxxxxxxxx0=")
    module = load_function("disconnect")
    fail_queue(module, sqs, monkeypatch)
    # What the handler did, in order (the test itself calls no AWS inside it: the recorder would
    # attribute such a call to disconnect).
    steps: list[str] = []
    store, service = module.service.memberships, module.service
    remove, broadcast = store.remove, service.broadcast_room

    def removing(room_id: str, *args: Any) -> Any:
        steps.append(f"remove {room_id}")
        return remove(room_id, *args)

    def announcing(endpoint: str, room_id: str, *args: Any, **kwargs: Any) -> Any:
        steps.append(f"announce {room_id}")
        return broadcast(endpoint, room_id, *args, **kwargs)

    monkeypatch.setattr(store, "remove", removing)
    monkeypatch.setattr(service, "broadcast_room", announcing)
    assert module.handler(disconnect_event(connection_id=NEWCOMER), FakeContext())["statusCode"] == 200
    assert steps == ["remove stadium", "remove tiny", "announce stadium", "announce tiny"]
    assert memberships(dynamodb, NEWCOMER) == set()
    assert NEWCOMER not in record_ids(dynamodb)
    assert presence(management_api, "FRIENDxxxxxxxx0=") == [("newcomer", "offline")]


def test_disconnect_whose_store_fails_in_one_room_still_leaves_and_announces_the_others(
    sqs: Any,
    crowd: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put_record(dynamodb, NEWCOMER, ROOM, "newcomer", rooms=("tiny",))
    put_record(dynamodb, "FRIENDxxxxxxxx0=", "tiny", "friend")
    management_api.live.add("FRIENDxxxxxxxx0=")
    module = load_function("disconnect")
    store = module.service.memberships
    remove = store.remove

    def failing_in_the_stadium(room_id: str, *args: Any) -> Any:
        if room_id == ROOM:
            raise StoreUnavailable("could not update the room: ProvisionedThroughputExceededException")
        return remove(room_id, *args)

    monkeypatch.setattr(store, "remove", failing_in_the_stadium)
    with pytest.raises(StoreUnavailable):  # counted and raised by the handler, after the other rooms
        module.handler(disconnect_event(connection_id=NEWCOMER), FakeContext())
    assert memberships(dynamodb, NEWCOMER) == {ROOM}  # left to its TTL
    assert presence(management_api, "FRIENDxxxxxxxx0=") == [("newcomer", "offline")]


# -- typing is bounded, never sharded ---------------------------------------------------------------


def test_typing_in_a_room_past_the_shard_size_is_dropped(
    sqs: Any, crowd: list[str], management_api: FakeManagementApi
) -> None:
    module = load_function("typing")
    assert frame(module, crowd[0], {"action": "typing", "room_id": ROOM})["statusCode"] == 200
    assert sum(management_api.attempts.values()) == 0  # nothing to anyone, the sender included
    assert receive(sqs.client, sqs.url) == []


def test_typing_up_to_the_shard_size_is_posted(
    sqs: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    members = member_ids(3)
    for i, cid in enumerate(members):
        put_record(dynamodb, cid, ROOM, f"user{i}")
        management_api.live.add(cid)
    assert (
        frame(load_function("typing"), members[0], {"action": "typing", "room_id": ROOM})["statusCode"] == 200
    )
    for cid in members[1:]:
        assert [f["action"] for f in management_api.frames_to(cid)] == ["typing"]
