"""Missed ``$disconnect`` end to end, through a stack in a thread of this process (so the test can drop the
``$disconnect`` route): the next broadcast's 410s remove the records of clients killed without a close
frame, an expired record is skipped by a broadcast and removed by its cleanup of expired members, and no
later broadcast posts to a dead connection (counted from the function's ``broadcast`` log line). The
stack's own reaper is off: it could delete the expired record before the broadcast reads the room."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from local_stack import Stack
from local_stack.testing import start_stack
from local_stack.testing.ws import ChatClient, until
from tests.reliability import summary
from tests.support.records import table_client

ROOM = "ghosts"


@pytest.fixture(scope="module")
def thread_stack() -> Iterator[Stack]:
    with start_stack(max_workers=2) as stack:
        yield stack


def records_by_user(db: Any) -> dict[str, dict[str, Any]]:
    items = db.scan(TableName="chat_connections", ConsistentRead=True)["Items"]
    return {i["user_id"]["S"]: i for i in items if i["room_id"]["S"] == ROOM}


def broadcast_lines(stack: Stack) -> list[dict[str, Any]]:
    """``sendMessage``'s ``broadcast`` log lines (JSON after the ``[function] `` prefix), oldest first."""
    lines = []
    for line in list(stack.logs):
        with contextlib.suppress(ValueError):
            entry = json.loads(line[line.find("{") :]) if "{" in line else None
            if isinstance(entry, dict) and entry.get("message") == "broadcast":
                lines.append(entry)
    return lines


wait_for = partial(until, interval=0.1)


@pytest.mark.timeout(180)
def test_missed_disconnect_end_to_end_410_path_and_ttl(thread_stack: Stack) -> None:
    db = table_client(thread_stack.dynamodb_endpoint)
    users = [f"ghost{i}" for i in range(6)]
    figures: dict[str, int] = {}

    async def run() -> None:
        clients = {u: await ChatClient.join(thread_stack.ws_url, u, ROOM) for u in users}
        assert await wait_for(lambda: len(records_by_user(db)) == 6, 15)
        connected = time.monotonic()
        before = len(thread_stack.gateway.connections)
        disconnect_route = thread_stack.gateway.routes.pop("$disconnect")  # API Gateway missed them
        try:
            dead, alive = users[3:], users[:3]
            for u in dead:
                clients[u].abort()
            assert await wait_for(lambda: len(thread_stack.gateway.connections) <= before - 3, 15)
            await asyncio.sleep(0.5)
            left_behind = set(records_by_user(db)) & set(dead)
            figures["dropped"] = len(left_behind)

            # A 410 within $connect's 10 s timeout may be a $connect still running: such a connection is
            # kept (docs/rooms.md). Past it, the next broadcast: each dead id answers 410 and its record goes.
            await asyncio.sleep(max(0.0, connected + 10.5 - time.monotonic()))
            await clients[alive[0]].send("after the crash")
            assert await wait_for(lambda: all(clients[u].received["after the crash"] for u in alive), 30)
            assert await wait_for(lambda: not set(records_by_user(db)) & set(dead), 15)
            figures["removed_by_410"] = len(left_behind - set(records_by_user(db)))

            # TTL: this record's connection is past its 2 h (API Gateway would have closed it). Even while
            # the socket still answers, it is skipped, then reaped.
            expired = alive[2]
            expired_id = records_by_user(db)[expired]["connection_id"]
            past = {":past": {"N": str(int(time.time()) - 1)}}
            # The record and its membership of the room (what a broadcast reads) carry the same ttl.
            for table, key in (
                ("chat_connections", {"connection_id": expired_id}),
                (
                    "chat_memberships",
                    {"room_id": {"S": ROOM}, "member": {"S": f"{expired}#{expired_id['S']}"}},
                ),
            ):
                db.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET #t = :past",
                    ExpressionAttributeNames={"#t": "ttl"},
                    ExpressionAttributeValues=past,
                )
            logged = len(broadcast_lines(thread_stack))
            await clients[alive[0]].send("past the ttl")
            assert await wait_for(lambda: clients[alive[1]].received["past the ttl"] == 1, 30)
            await asyncio.sleep(1.0)  # the broadcast had every recipient in hand already
            figures["skipped_by_ttl"] = int(clients[expired].received["past the ttl"] == 0)
            # The stack's reaper is off: only the broadcast's own cleanup of expired members removes it.
            assert await wait_for(lambda: expired not in records_by_user(db), 15)
            figures["reaped"] = 1
            # Posts to dead ids after their 410 / TTL, from the function's own log: this broadcast's
            # recipients (ids it POSTed to) beyond the two live, unexpired members.
            assert await wait_for(lambda: len(broadcast_lines(thread_stack)) > logged, 15)
            [second] = broadcast_lines(thread_stack)[logged:]
            figures["posted_to_dead"] = int(second["recipients"]) - 2
            assert second["delivered"] == 2 and second["expired_skipped"] == 1
        finally:
            thread_stack.gateway.routes["$disconnect"] = disconnect_route
            for u in users[:3]:
                await clients[u].close()

    try:
        asyncio.run(run())
    finally:
        summary.record("missed_disconnect", **figures)
    assert figures == {
        "dropped": 3,
        "removed_by_410": 3,
        "skipped_by_ttl": 1,
        "reaped": 1,
        "posted_to_dead": 0,
    }
