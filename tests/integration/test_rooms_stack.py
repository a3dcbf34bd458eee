"""Rooms, presence, direct messages and the rate limit through the real local stack with real clients.

Frames of one connection run concurrently (as on API Gateway): each step awaits its answer first."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack import Stack
from local_stack.testing import start_stack
from local_stack.testing.ws import ChatClient, until

from .helpers import run_async


async def join(stack: Stack, user: str, room: str) -> ChatClient:
    return await ChatClient.join(stack.ws_url, user, room)


@pytest.mark.timeout(180)
@run_async
async def test_one_connection_in_three_rooms_gets_each_rooms_messages_and_nothing_else(
    chat_stack: Stack,
) -> None:
    alice = await join(chat_stack, "alice", "t3-r1")
    for room in ("t3-r2", "t3-r3"):
        joined = await alice.request({"action": "join", "room_id": room}, "joined")
        assert joined == {"action": "joined", "room_id": room}
    others = {
        room: await join(chat_stack, user, room)
        for user, room in (("bob", "t3-r2"), ("carol", "t3-r3"), ("dave", "t3-r4"))
    }
    sent = []
    for room, client in [("t3-r1", alice), *others.items()]:
        text = f"hello {room}"
        ack = await client.request(
            {"action": "sendMessage", "room_id": room, "message": text, "client_msg_id": f"c-{room}"},
            "ack",
        )
        sent.append((room, text, ack["message_id"]))
    expected = {(room, text, mid) for room, text, mid in sent if room != "t3-r4"}
    assert await until(lambda: len(alice.of("message")) >= 3, 20)
    await asyncio.sleep(1.0)  # anything else would have arrived by now
    got = {(f["room_id"], f["message"], f["message_id"]) for f in alice.of("message")}
    assert got == expected
    assert len(alice.of("message")) == 3
    assert [f["room_id"] for f in others["t3-r4"].of("message")] == ["t3-r4"]
    for client in (alice, *others.values()):
        await client.close()


@pytest.mark.timeout(180)
@run_async
async def test_presence_seen_by_a_third_party_matches_the_joins_and_leaves_exactly(chat_stack: Stack) -> None:
    room = "pres"

    observer = await join(chat_stack, "olga", room)

    async def seen(count: int) -> list[tuple[str, str]]:
        assert await until(lambda: len(observer.of("presence")) >= count, 20), observer.frames
        return [(f["user_id"], f["state"]) for f in observer.of("presence")]

    tab1 = await join(chat_stack, "alice", room)
    assert await seen(1) == [("alice", "online")]
    tab2 = await join(chat_stack, "alice", room)  # a second tab: nothing
    bob = await join(chat_stack, "bob", "pres-lobby")
    await bob.request({"action": "join", "room_id": room}, "joined")
    assert await seen(2) == [("alice", "online"), ("bob", "online")]
    await tab1.request({"action": "leave", "room_id": room}, "left")  # alice still has tab2
    await bob.request({"action": "join", "room_id": room}, "joined")  # twice: nothing
    await tab2.close()  # her last connection: offline via $disconnect
    assert await seen(3) == [("alice", "online"), ("bob", "online"), ("alice", "offline")]
    await bob.request({"action": "leave", "room_id": room}, "left")
    assert await seen(4) == [
        ("alice", "online"),
        ("bob", "online"),
        ("alice", "offline"),
        ("bob", "offline"),
    ]
    members = await observer.request({"action": "listMembers"}, "members")
    assert [m["user_id"] for m in members["members"]] == ["olga"]
    await asyncio.sleep(1.0)
    assert len(observer.of("presence")) == 4, observer.of("presence")
    for client in (observer, tab1, bob):
        await client.close()


@pytest.mark.timeout(180)
@run_async
async def test_a_direct_message_reaches_both_recipient_tabs_and_the_senders_second_tab_only(
    chat_stack: Stack,
) -> None:
    a1, a2 = (
        await join(chat_stack, "dm-alice", "dm-1"),
        await join(chat_stack, "dm-alice", "dm-2"),
    )
    b1, b2 = (
        await join(chat_stack, "dm-bob", "dm-1"),
        await join(chat_stack, "dm-bob", "dm-3"),
    )
    carol = await join(chat_stack, "dm-carol", "dm-1")
    ack = await a1.request(
        {"action": "sendDirect", "to_user_id": "dm-bob", "message": "psst", "client_msg_id": "d-1"}, "ack"
    )
    assert ack["to_user_id"] == "dm-bob"
    for client in (b1, b2, a2):
        assert await until(lambda c=client: len(c.of("direct")) == 1, 20)
        [frame] = client.of("direct")
        assert (frame["from_user_id"], frame["to_user_id"], frame["message"], frame["message_id"]) == (
            "dm-alice",
            "dm-bob",
            "psst",
            ack["message_id"],
        )
    await asyncio.sleep(1.0)
    assert a1.of("direct") == [] and carol.of("direct") == []
    history = await b2.request({"action": "getHistory", "with_user_id": "dm-alice"}, "history")
    assert [m["message_id"] for m in history["messages"]] == [ack["message_id"]]
    for client in (a1, a2, b1, b2, carol):
        await client.close()


@pytest.fixture
def limited_stack() -> Iterator[Stack]:
    settings = {"RATE_LIMIT_PER_SECOND": "0.2", "RATE_LIMIT_BURST": "10"}
    with start_stack(max_workers=3, function_settings=settings) as stack:
        yield stack


@pytest.mark.timeout(180)
@run_async
async def test_ten_connections_of_one_user_share_one_rate_limit(limited_stack: Stack) -> None:
    tabs = [await join(limited_stack, "flood", f"flood-{n}") for n in range(10)]
    started = time.monotonic()
    for _ in range(3):  # 30 frames of four kinds over ten connections and ten rooms
        for n, tab in enumerate(tabs):
            kinds: list[dict[str, Any]] = [
                {"action": "listMembers"},
                {"action": "join", "room_id": f"extra-{n}"},
                {"action": "typing"},
                {"action": "sendMessage", "message": "x"},
            ]
            await tab.ws.send(json.dumps(kinds[n % 4]))
    assert await until(lambda: any(t.of("error") for t in tabs), 30)
    await asyncio.sleep(2.0)
    elapsed = time.monotonic() - started
    answered = sum(len(t.of(a)) for t in tabs for a in ("members", "joined", "message"))
    typing = sum(1 for n in range(10) if n % 4 == 2)  # typing answers nothing when allowed
    codes = [e["code"] for t in tabs for e in t.of("error")]
    assert set(codes) == {"rate_limited"}
    # A burst of 10 plus 0.2 a second: what all ten connections got done together.
    assert answered <= 10 + elapsed * 0.2 + 1, (answered, elapsed)
    assert answered >= 10 - 3 * typing
    for tab in tabs:
        await tab.close()
