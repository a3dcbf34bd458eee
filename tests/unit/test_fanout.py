"""Sharded fan-out through the handlers: send_message past the shard size queues jobs, fanout posts them
(partial batch failure, redelivery of the failed shard alone, the DLQ after max receives, a 410 inside a
shard), below the shard size nothing changes, and a job that cannot be queued is told to the sender."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from local_stack.testing import FakeContext, FakeManagementApi
from tests.conftest import load_function
from tests.support.events import message_event
from tests.support.records import MEMBERSHIPS_TABLE, put_record, record_ids, table_items
from tests.support.sqs import (
    DropsFirstEntry,
    bodies,
    create_fanout_queues,
    deliver,
    fanout_context,
    receive,
    sqs_event,
)

SENDER = "SENDERxxxxxxxx0="
ROOM = "live"


def member_ids(n: int) -> list[str]:
    return [f"M{i:014d}0=" for i in range(n)]


@pytest.fixture
def room(dynamodb: Any, management_api: FakeManagementApi) -> list[str]:
    """The sender and 6 others in the room (7 live connections: 3 jobs of 3, 3 and 1)."""
    put_record(dynamodb, SENDER, ROOM, "alice", name="Alice")
    management_api.live.add(SENDER)
    others = member_ids(6)
    for i, cid in enumerate(others):
        put_record(dynamodb, cid, ROOM, f"user{i}")
        management_api.live.add(cid)
    return [SENDER, *others]


@pytest.fixture
def fanout(sqs: Any, room: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    module = load_function("fanout")
    monkeypatch.setattr(module, "retry_delay", lambda receives: 0)  # failed shards come back at once
    return module


def send(module: Any, body: dict[str, Any]) -> dict[str, Any]:
    return module.handler(message_event(body, connection_id=SENDER), FakeContext())


def messages_to(api: FakeManagementApi, cid: str) -> list[dict[str, Any]]:
    return [f for f in api.frames_to(cid) if f["action"] == "message"]


def test_past_the_shard_size_the_message_is_queued_in_shards_and_fanout_posts_each_once(
    sqs: Any, room: list[str], management_api: FakeManagementApi
) -> None:
    sender = load_function("send_message")
    response = send(sender, {"action": "sendMessage", "message": "big room", "client_msg_id": "c1"})
    assert response["statusCode"] == 200
    [ack] = management_api.frames_to(SENDER)  # the ack only: the message itself is in the shards
    assert ack["action"] == "ack"
    assert all(messages_to(management_api, cid) == [] for cid in room)
    jobs = bodies(sqs.client, sqs.url)
    assert sorted(len(job["members"]) for job in jobs) == [1, 3, 3]
    assert sorted(m[0] for job in jobs for m in job["members"]) == sorted(room)
    assert {job["message_id"] for job in jobs} == {ack["message_id"]}

    # The same jobs again, through the fanout function as the mapping would invoke it.
    sqs.client.send_message_batch(
        QueueUrl=sqs.url,
        Entries=[{"Id": str(i), "MessageBody": json.dumps(job)} for i, job in enumerate(jobs)],
    )
    answers = deliver(sqs.client, sqs.url, load_function("fanout"), fanout_context(), batch_size=2)
    assert all(answer == {"batchItemFailures": []} for answer in answers)
    for cid in room:
        [frame] = messages_to(management_api, cid)
        assert (frame["message"], frame["message_id"], frame["room_id"]) == (
            "big room",
            ack["message_id"],
            ROOM,
        )
    assert receive(sqs.client, sqs.url) == []


def test_up_to_the_shard_size_nothing_is_queued(
    sqs: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    for cid in (SENDER, *member_ids(2)):
        put_record(dynamodb, cid, ROOM, cid)
        management_api.live.add(cid)
    sender = load_function("send_message")
    send(sender, {"action": "sendMessage", "message": "small room"})
    for cid in (SENDER, *member_ids(2)):
        assert [f["message"] for f in messages_to(management_api, cid)] == ["small room"]
    assert receive(sqs.client, sqs.url) == []


def test_without_a_queue_a_large_room_is_posted_by_send_message_itself(
    room: list[str], management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_SHARD_SIZE", "3")
    sender = load_function("send_message")
    send(sender, {"action": "sendMessage", "message": "no queue"})
    assert all(len(messages_to(management_api, cid)) == 1 for cid in room)


def queue_jobs(sqs: Any, room: list[str]) -> list[dict[str, Any]]:
    sender = load_function("send_message")
    send(sender, {"action": "sendMessage", "message": "m", "client_msg_id": "c1"})
    jobs = bodies(sqs.client, sqs.url)
    assert len(jobs) == 3
    return jobs


def put_jobs(sqs: Any, jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(job))


def test_a_failed_post_fails_only_its_shard_which_alone_comes_back(
    sqs: Any, room: list[str], fanout: Any, management_api: FakeManagementApi
) -> None:
    jobs = queue_jobs(sqs, room)
    failing = jobs[0]["members"][0][0]
    management_api.scripts[failing] = [500, 500, 500]  # every attempt of one post
    put_jobs(sqs, jobs)
    messages = receive(sqs.client, sqs.url)
    assert len(messages) == 3
    answer = fanout.handler(sqs_event(messages), fanout_context())
    failed_record = next(m["MessageId"] for m in messages if json.loads(m["Body"]) == jobs[0])
    assert answer == {"batchItemFailures": [{"itemIdentifier": failed_record}]}
    for m in messages:
        if m["MessageId"] != failed_record:
            sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=m["ReceiptHandle"])
    assert messages_to(management_api, failing) == []

    # Back at once (fanout shortened its visibility), alone: the failed shard, whose post now succeeds.
    [again] = receive(sqs.client, sqs.url)
    assert json.loads(again["Body"]) == jobs[0]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert fanout.handler(sqs_event([again]), fanout_context()) == {"batchItemFailures": []}
    counts = Counter(cid for cid in room for _ in messages_to(management_api, cid))
    in_first = {m[0] for m in jobs[0]["members"]}
    # Its other members got it twice (same message_id: clients drop the repeat), everyone else once.
    assert counts == Counter({cid: 2 if cid in in_first and cid != failing else 1 for cid in room})
    assert len({f["message_id"] for cid in room for f in messages_to(management_api, cid)}) == 1


def test_near_the_deadline_fanout_starts_no_more_posts_and_fails_those_records_alone(
    sqs: Any, room: list[str], fanout: Any, management_api: FakeManagementApi
) -> None:
    import time

    import shared.chat

    jobs = queue_jobs(sqs, room)
    put_jobs(sqs, jobs)
    messages = receive(sqs.client, sqs.url)
    assert len(messages) == 3
    acks = Counter(management_api.attempts)
    management_api.latency = 1.0  # each job's posts take 1 s (they run at once)
    # The deadline (0.5 s margin) 0.7 s past the reserve: the first job starts with time for a post and
    # the call that brings a record back; the second, 1 s later, has not.
    seconds = 0.5 + shared.chat.SHARD_RESERVE_SECONDS + 0.7
    started = time.monotonic()
    answer = fanout.handler(sqs_event(messages), FakeContext("fanout", seconds=seconds))
    assert time.monotonic() - started < 3.0  # answered long before the deadline
    order = [json.loads(m["Body"]) for m in messages]
    first = {m[0] for m in order[0]["members"]}
    later = {m["MessageId"] for m in messages[1:]}
    assert {f["itemIdentifier"] for f in answer["batchItemFailures"]} == later
    for cid in room:
        assert len(messages_to(management_api, cid)) == (1 if cid in first else 0)
        assert management_api.attempts[cid] - acks[cid] == (1 if cid in first else 0)  # others: not started
    sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=messages[0]["ReceiptHandle"])

    # Back at once (their visibility shortened), and posted in an invocation with time: everyone once.
    management_api.latency = 0.0
    again = receive(sqs.client, sqs.url)
    assert {m["MessageId"] for m in again} == later
    assert fanout.handler(sqs_event(again), fanout_context()) == {"batchItemFailures": []}
    assert all(len(messages_to(management_api, cid)) == 1 for cid in room)


def test_a_shard_failing_every_receive_ends_in_the_dead_letter_queue(
    dynamodb: Any, room: list[str], management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    client = boto3.client("sqs")
    url, dlq_url = create_fanout_queues(client, max_receive_count=3)
    monkeypatch.setenv("FANOUT_QUEUE_URL", url)
    monkeypatch.setenv("FANOUT_SHARD_SIZE", "3")
    module = load_function("fanout")
    monkeypatch.setattr(module, "retry_delay", lambda receives: 0)
    stuck = member_ids(6)[0]
    management_api.scripts[stuck] = [500] * 100
    job = {
        "v": 1,
        "endpoint": management_api.endpoint_url,
        "room_id": ROOM,
        "message_id": "01JX",
        "data": json.dumps({"action": "message", "message_id": "01JX"}),
        "members": [[stuck, "user0", 0]],
    }
    client.send_message(QueueUrl=url, MessageBody=json.dumps(job))
    received = 0
    for _ in range(10):
        messages = receive(client, url)
        if not messages:
            break
        received += 1
        assert module.handler(sqs_event(messages), fanout_context())["batchItemFailures"]
    assert received == 3
    [dead] = receive(client, dlq_url)
    assert json.loads(dead["Body"]) == job
    assert record_ids(dynamodb) >= {stuck}  # failing posts never delete a connection


def test_a_410_inside_a_shard_removes_exactly_that_connection_and_announces_it_offline(
    sqs: Any, room: list[str], fanout: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    jobs = queue_jobs(sqs, room)
    gone = jobs[1]["members"][1][0]
    gone_user = jobs[1]["members"][1][1]
    management_api.live.discard(gone)
    put_jobs(sqs, jobs)
    answers = deliver(sqs.client, sqs.url, fanout, fanout_context())
    assert all(answer == {"batchItemFailures": []} for answer in answers)  # a 410 is not a failure
    assert record_ids(dynamodb) == set(room) - {gone}
    members = {
        item["connection_id"]["S"]
        for item in table_items(dynamodb, MEMBERSHIPS_TABLE)
        if not item["room_id"]["S"].startswith("presence#")
    }
    assert members == set(room) - {gone}
    for cid in set(room) - {gone}:
        assert len(messages_to(management_api, cid)) == 1
        offline = [f for f in management_api.frames_to(cid) if f["action"] == "presence"]
        assert [(f["user_id"], f["state"]) for f in offline] == [(gone_user, "offline")]
    assert management_api.attempts[gone] == 1  # a 410 is never retried


def test_a_body_that_is_not_a_job_fails_alone(
    sqs: Any, room: list[str], fanout: Any, management_api: FakeManagementApi
) -> None:
    jobs = queue_jobs(sqs, room)
    put_jobs(sqs, jobs[:1])
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody='{"v": 1, "members": []}')
    messages = receive(sqs.client, sqs.url)
    answer = fanout.handler(sqs_event(messages), fanout_context())
    bad = next(m["MessageId"] for m in messages if "endpoint" not in m["Body"])
    assert answer == {"batchItemFailures": [{"itemIdentifier": bad}]}
    assert all(len(messages_to(management_api, m[0])) == 1 for m in jobs[0]["members"])
    for m in messages:
        if m["MessageId"] != bad:
            sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=m["ReceiptHandle"])
    # Back at once (visibility 0), not after the 360 s visibility timeout: it never becomes a job, so
    # its receives run out and it reaches the DLQ in seconds.
    [again] = receive(sqs.client, sqs.url)
    assert again["MessageId"] == bad


def test_shards_that_cannot_be_queued_are_told_to_the_sender_and_a_retry_completes_the_fan_out(
    sqs: Any,
    room: list[str],
    fanout: Any,
    dynamodb: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender = load_function("send_message")
    monkeypatch.setattr(sender.service.fanout, "_client", DropsFirstEntry(sqs.client))
    monkeypatch.setattr(sender.service.fanout, "_sleep", lambda seconds: None)
    body = {"action": "sendMessage", "message": "m", "client_msg_id": "c1"}
    assert send(sender, body)["statusCode"] == 500
    [error] = management_api.frames_to(SENDER)  # no ack: not every member will get it
    assert error["action"] == "error" and error["code"] == "internal"
    assert "client_msg_id" in error["message"]
    deliver(sqs.client, sqs.url, fanout, fanout_context())
    reached = {cid for cid in room if messages_to(management_api, cid)}
    assert 0 < len(reached) < len(room)  # two of three shards were queued: nothing said it was all

    # The queue works again (a new execution environment); the sender sends the same client_msg_id again.
    management_api.reset()
    assert send(load_function("send_message"), body)["statusCode"] == 200
    [ack] = [f for f in management_api.frames_to(SENDER) if f["action"] == "ack"]
    deliver(sqs.client, sqs.url, fanout, fanout_context())
    for cid in room:
        [frame] = messages_to(management_api, cid)
        assert frame["message_id"] == ack["message_id"]
