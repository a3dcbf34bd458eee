"""Sharded fan-out through the handlers: send_message past the shard size queues jobs, fanout posts them
(partial batch failure, redelivery of the failed shard alone, the DLQ after max receives, a 410 inside a
shard), below the shard size nothing changes, and a job that cannot be queued is told to the sender."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import boto3
import pytest

import shared.chat
from local_stack.testing import FakeContext
from tests.support.sqs import (
    DropsFirstEntry,
    bodies,
    create_fanout_queues,
    deliver,
    fanout_context,
    receive,
    sqs_event,
)
from tests.unit.chat_driver import Chat, cid, member_ids, queue_through, requeue

SENDER = cid("sender")
ROOM = "live"


@pytest.fixture
def room(chat: Chat) -> list[str]:
    """The sender and 6 others in the room (7 live connections: 3 jobs of 3, 3 and 1)."""
    return [chat.put(SENDER, ROOM, "alice", name="Alice"), *chat.crowd(ROOM, 6)]


@pytest.fixture
def fanout(chat: Chat, sqs: Any, room: list[str]) -> Any:
    module = chat.function("fanout")
    module.retry_delay = lambda receives: 0  # failed shards come back at once
    return module


def send(chat: Chat, message: str, **fields: Any) -> Any:
    return chat.send(SENDER, {"action": "sendMessage", "message": message, **fields})


def queue_jobs(chat: Chat, sqs: Any) -> list[dict[str, Any]]:
    """The three jobs of a message sent to the room, taken off the queue and put back."""
    send(chat, "m", client_msg_id="c1")
    jobs = bodies(sqs.client, sqs.url)
    assert len(jobs) == 3
    requeue(sqs, jobs)
    return jobs


def delete_all_but(sqs: Any, messages: list[dict[str, Any]], kept: set[str]) -> None:
    """What the event source mapping does with a batch whose ``kept`` records failed."""
    for m in messages:
        if m["MessageId"] not in kept:
            sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=m["ReceiptHandle"])


def test_past_the_shard_size_the_message_is_queued_in_shards_and_fanout_posts_each_once(
    chat: Chat, sqs: Any, room: list[str]
) -> None:
    assert send(chat, "big room", client_msg_id="c1")["statusCode"] == 200
    [ack] = chat.frames(SENDER)  # the ack only: the message itself is in the shards
    assert ack["action"] == "ack"
    assert all(chat.frames(member, "message") == [] for member in room)
    jobs = bodies(sqs.client, sqs.url)
    assert sorted(len(job["members"]) for job in jobs) == [1, 3, 3]
    assert sorted(m[0] for job in jobs for m in job["members"]) == sorted(room)
    assert {job["message_id"] for job in jobs} == {ack["message_id"]}

    # The same jobs again, through the fanout function as the mapping would invoke it.
    sqs.client.send_message_batch(
        QueueUrl=sqs.url,
        Entries=[{"Id": str(i), "MessageBody": json.dumps(job)} for i, job in enumerate(jobs)],
    )
    answers = deliver(sqs.client, sqs.url, chat.function("fanout"), fanout_context(), batch_size=2)
    assert all(answer == {"batchItemFailures": []} for answer in answers)
    for member in room:
        [frame] = chat.frames(member, "message")
        assert (frame["message"], frame["message_id"], frame["room_id"]) == (
            "big room",
            ack["message_id"],
            ROOM,
        )
    assert receive(sqs.client, sqs.url) == []


@pytest.mark.parametrize(
    ("size", "queue"), [(3, True), (7, False)], ids=["up-to-the-shard-size", "without-a-queue"]
)
def test_send_message_posts_to_the_room_itself(
    chat: Chat, sqs: Any, monkeypatch: pytest.MonkeyPatch, size: int, queue: bool
) -> None:
    if not queue:
        monkeypatch.delenv("FANOUT_QUEUE_URL")
    members = [chat.put(SENDER, ROOM, "alice"), *chat.crowd(ROOM, size - 1)]
    send(chat, "posted")
    assert all(chat.messages(member) == [(ROOM, "posted")] for member in members)
    assert receive(sqs.client, sqs.url) == []


def test_a_failed_post_fails_only_its_shard_which_alone_comes_back(
    chat: Chat, sqs: Any, room: list[str], fanout: Any
) -> None:
    jobs = queue_jobs(chat, sqs)
    failing = jobs[0]["members"][0][0]
    chat.api.scripts[failing] = [500, 500, 500]  # every attempt of one post
    messages = receive(sqs.client, sqs.url)
    assert len(messages) == 3
    answer = fanout.handler(sqs_event(messages), fanout_context())
    failed_record = next(m["MessageId"] for m in messages if json.loads(m["Body"]) == jobs[0])
    assert answer == {"batchItemFailures": [{"itemIdentifier": failed_record}]}
    delete_all_but(sqs, messages, {failed_record})
    assert chat.frames(failing, "message") == []

    # Back at once (fanout shortened its visibility), alone: the failed shard, whose post now succeeds.
    [again] = receive(sqs.client, sqs.url)
    assert json.loads(again["Body"]) == jobs[0]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert fanout.handler(sqs_event([again]), fanout_context()) == {"batchItemFailures": []}
    counts = Counter(member for member in room for _ in chat.frames(member, "message"))
    in_first = {m[0] for m in jobs[0]["members"]}
    # Its other members got it twice (same message_id: clients drop the repeat), everyone else once.
    assert counts == Counter({m: 2 if m in in_first and m != failing else 1 for m in room})
    assert len({f["message_id"] for member in room for f in chat.frames(member, "message")}) == 1


def test_near_the_deadline_fanout_starts_no_more_posts_and_fails_those_records_alone(
    chat: Chat, sqs: Any, room: list[str], fanout: Any
) -> None:
    queue_jobs(chat, sqs)
    messages = receive(sqs.client, sqs.url)
    assert len(messages) == 3
    acks = Counter(chat.api.attempts)
    chat.api.latency = 1.0  # each job's posts take 1 s (they run at once)
    # The deadline (0.5 s margin) 0.7 s past the reserve: the first job starts with time for a post and
    # the call that brings a record back; the second, 1 s later, has not.
    seconds = 0.5 + shared.chat.SHARD_RESERVE_SECONDS + 0.7
    started = time.monotonic()
    answer = fanout.handler(sqs_event(messages), FakeContext("fanout", seconds=seconds))
    assert time.monotonic() - started < 3.0  # answered long before the deadline
    first = {m[0] for m in json.loads(messages[0]["Body"])["members"]}
    later = {m["MessageId"] for m in messages[1:]}
    assert {f["itemIdentifier"] for f in answer["batchItemFailures"]} == later
    for member in room:
        assert len(chat.frames(member, "message")) == (1 if member in first else 0)
        assert chat.api.attempts[member] - acks[member] == (
            1 if member in first else 0
        )  # others: not started
    delete_all_but(sqs, messages, later)

    # Back at once (their visibility shortened), and posted in an invocation with time: everyone once.
    chat.api.latency = 0.0
    again = receive(sqs.client, sqs.url)
    assert {m["MessageId"] for m in again} == later
    assert fanout.handler(sqs_event(again), fanout_context()) == {"batchItemFailures": []}
    assert all(len(chat.frames(member, "message")) == 1 for member in room)


def test_a_shard_failing_every_receive_ends_in_the_dead_letter_queue(
    chat: Chat, room: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("sqs")
    url, dlq_url = create_fanout_queues(client, max_receive_count=3)
    monkeypatch.setenv("FANOUT_QUEUE_URL", url)
    monkeypatch.setenv("FANOUT_SHARD_SIZE", "3")
    module = chat.function("fanout")
    module.retry_delay = lambda receives: 0
    stuck = member_ids(6)[0]
    chat.api.scripts[stuck] = [500] * 100
    job = {
        "v": 1,
        "endpoint": chat.api.endpoint_url,
        "room_id": ROOM,
        "message_id": "01JX",
        "data": json.dumps({"action": "message", "message_id": "01JX"}),
        "members": [[stuck, "user0", 0]],
    }
    client.send_message(QueueUrl=url, MessageBody=json.dumps(job))
    received = 0
    while (messages := receive(client, url)) and received < 10:
        received += 1
        assert module.handler(sqs_event(messages), fanout_context())["batchItemFailures"]
    assert received == 3
    [dead] = receive(client, dlq_url)
    assert json.loads(dead["Body"]) == job
    assert stuck in chat.record_ids()  # failing posts never delete a connection


def test_a_410_inside_a_shard_removes_exactly_that_connection_and_announces_it_offline(
    chat: Chat, sqs: Any, room: list[str], fanout: Any
) -> None:
    jobs = queue_jobs(chat, sqs)
    gone, gone_user, _ = jobs[1]["members"][1]
    chat.api.live.discard(gone)
    answers = deliver(sqs.client, sqs.url, fanout, fanout_context())
    assert all(answer == {"batchItemFailures": []} for answer in answers)  # a 410 is not a failure
    assert chat.record_ids() == set(room) - {gone}
    assert {member.split("#")[1] for _, member in chat.memberships()} == set(room) - {gone}
    for member in set(room) - {gone}:
        assert len(chat.frames(member, "message")) == 1
        assert chat.presence(member) == [(ROOM, gone_user, "offline")]
    assert chat.api.attempts[gone] == 1  # a 410 is never retried


def test_a_body_that_is_not_a_job_fails_alone(chat: Chat, sqs: Any, fanout: Any) -> None:
    send(chat, "m", client_msg_id="c1")
    [first, *_] = bodies(sqs.client, sqs.url)
    requeue(sqs, [first, {"v": 1, "members": []}])
    messages = receive(sqs.client, sqs.url)
    answer = fanout.handler(sqs_event(messages), fanout_context())
    bad = next(m["MessageId"] for m in messages if "endpoint" not in m["Body"])
    assert answer == {"batchItemFailures": [{"itemIdentifier": bad}]}
    assert all(len(chat.frames(m[0], "message")) == 1 for m in first["members"])
    delete_all_but(sqs, messages, {bad})
    # Back at once (visibility 0), not after the 360 s visibility timeout: it never becomes a job, so
    # its receives run out and it reaches the DLQ in seconds.
    [again] = receive(sqs.client, sqs.url)
    assert again["MessageId"] == bad


def test_shards_that_cannot_be_queued_are_told_to_the_sender_and_a_retry_completes_the_fan_out(
    chat: Chat, sqs: Any, room: list[str], fanout: Any
) -> None:
    queue_through(chat.function("send_message"), DropsFirstEntry(sqs.client))
    assert send(chat, "m", client_msg_id="c1")["statusCode"] == 500
    [error] = chat.frames(SENDER)  # no ack: not every member will get it
    assert error["action"] == "error" and error["code"] == "internal"
    assert "client_msg_id" in error["message"]
    deliver(sqs.client, sqs.url, fanout, fanout_context())
    reached = {member for member in room if chat.frames(member, "message")}
    assert 0 < len(reached) < len(room)  # two of three shards were queued: nothing said it was all

    # The queue works again (a new execution environment); the sender sends the same client_msg_id again.
    chat.api.reset()
    chat.fresh("send_message")
    assert send(chat, "m", client_msg_id="c1")["statusCode"] == 200
    [ack] = chat.frames(SENDER, "ack")
    deliver(sqs.client, sqs.url, fanout, fanout_context())
    for member in room:
        [frame] = chat.frames(member, "message")
        assert frame["message_id"] == ack["message_id"]
