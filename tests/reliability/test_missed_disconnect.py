"""Missed ``$disconnect`` (API Gateway's is best-effort), at unit level: a vanished client's record is
removed by the next broadcast's 410, skipped once its TTL has passed, and never posted to again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from local_stack.testing import FakeContext, FakeManagementApi, make_token
from tests.conftest import load_function
from tests.reliability import summary
from tests.reliability.conftest import Captured
from tests.support.events import connect_event, message_event
from tests.support.records import record_ids

CLIENTS = [f"CLIENT{i}xxxxxxxx=" for i in range(6)]


def broadcast(module: Any, sender: str, text: str) -> None:
    event = message_event({"action": "sendMessage", "message": text}, connection_id=sender)
    assert module.handler(event, FakeContext()) == {"statusCode": 200}


def test_missed_disconnect_gone_records_are_removed_by_the_next_broadcast(
    dynamodb: Any, management_api: FakeManagementApi, captured: Captured
) -> None:
    connect, send = load_function("connect"), load_function("send_message")
    for i, cid in enumerate(CLIENTS):
        event = connect_event({"token": make_token(f"user{i}"), "room_id": "general"}, connection_id=cid)
        assert connect.handler(event, FakeContext())["statusCode"] == 200
        management_api.live.add(cid)
    management_api.reset()  # each $connect posted presence to those before it: count from here
    alive, dead = CLIENTS[:3], CLIENTS[3:]
    management_api.live.difference_update(dead)  # killed without a close frame; $disconnect dropped

    send.service._clock = lambda: time.time() + 60  # past the grace a 410 gets right after $connect
    broadcast(send, alive[0], "first")
    after_first = record_ids(dynamodb)
    attempts_first = {cid: management_api.attempts[cid] for cid in dead}
    broadcast(send, alive[1], "second")
    # POSTs to the dead ids after their 410: their records are gone, so the second broadcast makes none.
    posted_to_dead = sum(management_api.attempts[cid] - attempts_first[cid] for cid in dead)
    summary.record(
        "missed_disconnect",
        dropped=len(dead),
        removed_by_410=len(set(dead) - after_first),
        posted_to_dead=posted_to_dead,
    )
    assert after_first == set(alive)
    assert attempts_first == dict.fromkeys(dead, 1)  # one 410 each, never retried
    assert posted_to_dead == 0
    for cid in alive:
        messages = [f["message"] for f in management_api.frames_to(cid) if f["action"] == "message"]
        assert messages == ["first", "second"]
    assert captured.metrics()["GoneConnectionsRemoved"] == len(dead)


def test_missed_disconnect_expired_records_are_never_posted_to(
    connected: Callable[..., None], management_api: FakeManagementApi, captured: Captured
) -> None:
    now = int(time.time())
    connected(CLIENTS[0], "general", "alice")
    # Connected over 2 h 10 min ago: API Gateway has closed them; DynamoDB deletes up to 48 h late.
    # Worst case: their ids would still accept a post. A ttl of now counts as passed.
    expired = CLIENTS[1:]
    for offset, cid in enumerate(expired):
        connected(cid, "general", ttl=now - offset)
    send = load_function("send_message")
    broadcast(send, CLIENTS[0], "hello")
    posted = sum(management_api.attempts[cid] for cid in expired)
    [line] = [line for line in captured.logs() if line.get("message") == "broadcast"]
    summary.record(
        "missed_disconnect",
        dropped=len(expired),
        skipped_by_ttl=int(line["expired_skipped"]),
        posted_to_dead=posted,
    )
    assert posted == 0
    assert line["expired_skipped"] == len(expired) and line["recipients"] == 1
    # Their user is announced offline (presence); the message reaches only the live connection.
    frames = management_api.frames_to(CLIENTS[0])
    assert [f["message"] for f in frames if f["action"] == "message"] == ["hello"]


def test_missed_disconnect_expired_sender_cannot_post(
    connected: Callable[..., None], management_api: FakeManagementApi
) -> None:
    connected(CLIENTS[0], "general", "alice", ttl=int(time.time()) - 1)
    connected(CLIENTS[1], "general", "bob")
    send = load_function("send_message")
    broadcast(send, CLIENTS[0], "from beyond")
    assert [f.get("code") for f in management_api.frames_to(CLIENTS[0])] == ["forbidden_room"]
    assert management_api.frames_to(CLIENTS[1]) == []
