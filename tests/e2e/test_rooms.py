"""The browser client in several rooms on one connection: a room list with unread counts, switching rooms
without reconnecting, a member list that follows presence, "… is typing", direct messages, and a sender's
messages kept in order. Screenshots at desktop width and 375 px land in tests/e2e/artifacts/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Pages, Stack, intercept
from .test_chat import join, room, say, texts
from .test_history import seed

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent / "artifacts"


def open_nav(page: Any) -> None:
    """On narrow screens the room list is a drawer: open it."""
    if page.locator("#nav-toggle").is_visible() and page.locator("#nav").is_hidden():
        page.click("#nav-toggle")
        expect(page.locator("#nav")).to_be_visible()


def open_members(page: Any) -> None:
    if page.locator("#members-toggle").is_visible() and page.locator("#members-panel").is_hidden():
        page.click("#members-toggle")
        expect(page.locator("#members-panel")).to_be_visible()


def room_item(page: Any, room_id: str) -> Any:
    return page.locator(f'#room-list li[data-room="{room_id}"]')


def join_room(page: Any, room_id: str) -> None:
    open_nav(page)
    page.fill("#new-room", room_id)
    page.press("#new-room", "Enter")
    expect(page.locator("#room-name")).to_have_text(room_id)
    expect(room_item(page, room_id)).to_have_attribute("data-state", "joined")
    expect(room_item(page, room_id).locator(".conv-note")).to_have_count(0)  # "joining…" until joined


def switch(page: Any, room_id: str) -> None:
    open_nav(page)
    room_item(page, room_id).locator("button.conv").click()
    expect(page.locator("#room-name")).to_have_text(room_id)


def badge(page: Any, room_id: str) -> Any:
    return room_item(page, room_id).locator(".badge")


def member(page: Any, user_id: str) -> Any:
    return page.locator(f'#members li[data-user-id="{user_id}"]')


def record_frames(page: Any) -> list[tuple[str, dict[str, Any]]]:
    frames: list[tuple[str, dict[str, Any]]] = []

    def watch(ws: Any) -> None:
        ws.on("framesent", lambda payload: frames.append(("sent", json.loads(payload))))
        ws.on("framereceived", lambda payload: frames.append(("received", json.loads(payload))))

    page.on("websocket", watch)
    return frames


def test_two_users_three_rooms_presence_typing_and_a_direct_conversation(pages: Pages) -> None:
    SHOTS.mkdir(exist_ok=True)
    lobby, dev, ops = room(), room(), room()
    alice = pages.open("alice", width=1280, height=800)
    bob = pages.open("bob", width=375, height=740)
    sockets: list[Any] = []
    alice.on("websocket", lambda ws: sockets.append(ws))
    join(alice, "Alice", lobby)
    join_room(alice, dev)
    join_room(alice, ops)
    join(bob, "Bob", lobby)
    join_room(bob, dev)
    join_room(bob, ops)
    assert len(sockets) == 1, "three rooms, one WebSocket"

    # Presence: Alice, looking at the lobby, sees Bob come online there.
    switch(alice, lobby)
    expect(member(alice, "bob")).to_have_attribute("data-online", "true")
    expect(member(alice, "alice")).to_have_attribute("data-online", "true")

    # Unread counts: Bob writes in dev and ops while Alice reads the lobby.
    switch(bob, dev)
    say(bob, "dev one")
    say(bob, "dev two")
    switch(bob, ops)
    say(bob, "ops one")
    expect(badge(alice, dev)).to_have_text("2")
    expect(badge(alice, ops)).to_have_text("1")
    expect(badge(alice, lobby)).to_have_count(0)
    assert texts(alice) == []  # nothing of dev or ops shown in the lobby
    alice.screenshot(path=str(SHOTS / "unread-1280x800.png"))
    expect(alice.locator("#nav-toggle .badge")).to_be_hidden()  # the room list is on screen at 1280 px

    # Switching (same socket): dev's messages, its count cleared; ops still unread.
    switch(alice, dev)
    expect(alice.locator("#messages .msg .text")).to_have_text(["dev one", "dev two"])
    expect(badge(alice, dev)).to_have_count(0)
    expect(badge(alice, ops)).to_have_text("1")
    switch(alice, ops)
    expect(alice.locator("#messages .msg .text")).to_have_text(["ops one"])
    switch(alice, dev)
    expect(alice.locator("#messages .msg .text")).to_have_text(["dev one", "dev two"])
    assert len(sockets) == 1

    # On a narrow screen the unread count shows on the drawer's button.
    say(alice, "seen on the small screen?")
    expect(bob.locator("#nav-toggle .badge")).to_have_text("1")

    # Typing: shown to the others, gone a few seconds after they stop.
    switch(bob, dev)
    expect(bob.locator("#nav-toggle .badge")).to_be_hidden()
    # Typed over more than 2 s: a typing frame goes out at most once per 2 s per room, and Bob's last one
    # in this room (when he wrote "dev two") may be less than 2 s old.
    bob.locator("#message").press_sequentially("thinking about it", delay=150)
    # 10 s: the first typing frame may wait for the typing function's cold start on a loaded machine.
    expect(alice.locator("#typing")).to_have_text("Bob is typing…", timeout=10_000)
    expect(bob.locator("#typing")).to_have_text("")  # never echoed to the sender
    alice.screenshot(path=str(SHOTS / "rooms-1280x800.png"))
    expect(alice.locator("#typing")).to_have_text("", timeout=6_000)
    bob.fill("#message", "")

    # Presence offline: Bob leaves ops, Alice (in ops) sees him go offline there only.
    switch(alice, ops)
    expect(member(alice, "bob")).to_have_attribute("data-online", "true")
    open_nav(bob)
    room_item(bob, ops).locator("button.conv-leave").click()
    expect(room_item(bob, ops)).to_have_count(0)
    expect(member(alice, "bob")).to_have_attribute("data-online", "false")
    switch(alice, lobby)
    expect(member(alice, "bob")).to_have_attribute("data-online", "true")

    # A direct conversation, opened from the member list.
    member(alice, "bob").locator("button.dm-open").click()
    expect(alice.locator("#room-name")).to_have_text("Bob")
    expect(alice.locator("#room-hash")).to_have_text("@")
    say(alice, "psst, Bob")
    expect(alice.locator("#messages .msg.own .text")).to_have_text(["psst, Bob"])
    dm_item = bob.locator('#dm-list li[data-user="alice"]')
    expect(dm_item.locator(".badge")).to_have_text("1")
    expect(bob.locator("#nav-toggle .badge")).to_have_text("1")
    open_nav(bob)
    bob.screenshot(path=str(SHOTS / "rooms-nav-375x740.png"))
    dm_item.locator("button.conv").click()
    expect(bob.locator("#room-name")).to_have_text("Alice")
    expect(bob.locator("#messages .msg .text")).to_have_text(["psst, Bob"])
    say(bob, "hi Alice, only you see this")
    expect(alice.locator("#messages .msg .text")).to_have_text(["psst, Bob", "hi Alice, only you see this"])
    bob.screenshot(path=str(SHOTS / "direct-375x740.png"))
    switch(bob, dev)
    open_members(bob)
    expect(member(bob, "alice")).to_have_attribute("data-online", "true")
    bob.screenshot(path=str(SHOTS / "members-375x740.png"))
    bob.keyboard.press("Escape")
    expect(bob.locator("#members-panel")).to_be_hidden()
    bob.screenshot(path=str(SHOTS / "rooms-375x740.png"))
    alice.screenshot(path=str(SHOTS / "direct-1280x800.png"))
    assert "psst, Bob" not in texts(bob)  # the room shows room messages only
    # Nothing overflows sideways at 375 px.
    assert bob.evaluate("document.documentElement.scrollWidth") <= 375

    # After a reload the direct conversation comes back from the server's history (with_user_id).
    alice.reload()
    alice.wait_for_selector("body[data-ready=true]")
    join(alice, "Alice", lobby)
    # The rooms Alice was in are joined again.
    expect(room_item(alice, dev)).to_have_attribute("data-state", "joined")
    expect(room_item(alice, ops)).to_have_attribute("data-state", "joined")
    member(alice, "bob").locator("button.dm-open").click()
    expect(alice.locator("#messages .msg .text")).to_have_text(["psst, Bob", "hi Alice, only you see this"])
    for size in ("rooms-1280x800.png", "rooms-375x740.png", "direct-375x740.png", "members-375x740.png"):
        assert (SHOTS / size).stat().st_size > 10_000


def test_a_senders_messages_go_one_at_a_time_and_keep_their_order(pages: Pages) -> None:
    lobby, other = room(), room()
    alice, bob = pages.open("alice"), pages.open("bob")
    frames = record_frames(bob)
    join(alice, "Alice", lobby)
    join(bob, "Bob", lobby)
    join_room(bob, other)
    switch(bob, lobby)
    words = [f"n{i}" for i in range(8)]
    for word in words:  # typed faster than the server answers
        bob.fill("#message", word)
        bob.press("#message", "Enter")
    switch(bob, other)
    say(bob, "elsewhere")
    expect(alice.locator("#messages .msg .text")).to_have_text(words)
    expect(bob.locator("#outbox .pending")).to_have_count(0)
    # Never a second message out before the previous one was acknowledged.
    waiting: str | None = None
    sends = 0
    for direction, frame in frames:
        if direction == "sent" and frame.get("action") == "sendMessage":
            assert waiting is None, f"{frame['message']} sent before the ack of the previous one"
            waiting = frame["client_msg_id"]
            sends += 1
        elif direction == "received" and frame.get("action") == "ack" and frame["client_msg_id"] == waiting:
            waiting = None
    assert sends == len(words) + 1


def test_joining_a_room_is_checked_and_explained(pages: Pages) -> None:
    page = pages.open("carol", width=375, height=700)
    join(page, "Carol", room())
    expect(page.locator("#room-joining")).to_be_hidden()  # the connection's own room needs no join
    open_nav(page)
    page.fill("#new-room", "no spaces please")
    page.press("#new-room", "Enter")
    expect(page.locator("#room-error")).to_contain_text("Room names are 1\N{EN DASH}64 letters")
    expect(page.locator("#room-list li")).to_have_count(1)
    # The last room cannot be left (the connection opens with one); with two, each has a leave button.
    expect(page.locator("#room-list .conv-leave")).to_have_count(0)
    join_room(page, room())
    open_nav(page)
    expect(page.locator("#room-list .conv-leave")).to_have_count(2)
    expect(page.locator("#room-error")).to_be_hidden()


def test_protocol_frames_for_rooms_presence_typing_and_direct_messages(pages: Pages) -> None:
    page = pages.open("logic")
    result = page.evaluate(
        """async () => {
            const p = await import("./protocol.js");
            const parse = (frame) => p.parseFrame(JSON.stringify(frame));
            const dm = parse({ action: "direct", from_user_id: "bob", to_user_id: "alice", message: "yo",
                               message_id: "01M8RN34BX9E1B42A8P7CJG8XE", timestamp: "2026-12-01T11:15:58Z" });
            return {
                sent: [p.joinFrame("r"), p.leaveFrame("r"), p.listMembersFrame("r"), p.typingFrame("r"),
                       p.sendDirectFrame("bob", "hi", "c-1"), p.historyFrame("r", { after: "X" }),
                       p.historyFrame({ withUserId: "bob" }, { before: "Y", limit: 10 })].map(JSON.parse),
                presence: parse({ action: "presence", room_id: "r", user_id: "bob", state: "offline" }),
                badPresence: parse({ action: "presence", room_id: "r", user_id: "bob", state: "away" }).kind,
                memberList: parse({ action: "members", room_id: "r",
                                    members: [{ user_id: "a", name: "A" }, { name: "x" }] }).members,
                typed: parse({ action: "typing", room_id: "r", user_id: "bob", name: "Bob" }),
                dm: [typeof dm.direct, dm.direct, dm.userId, dm.toUserId, dm.roomId],
                joined: parse({ action: "joined", room_id: "r" }),
                tooMany: p.explainJoinError("too_many_rooms", "r"),
            };
        }"""
    )
    assert "leave one" in result.pop("tooMany")
    assert result == {
        "sent": [
            {"action": "join", "room_id": "r"},
            {"action": "leave", "room_id": "r"},
            {"action": "listMembers", "room_id": "r"},
            {"action": "typing", "room_id": "r"},
            {"action": "sendDirect", "to_user_id": "bob", "message": "hi", "client_msg_id": "c-1"},
            {"action": "getHistory", "room_id": "r", "after": "X"},
            {"action": "getHistory", "with_user_id": "bob", "before": "Y", "limit": 10},
        ],
        "presence": {"kind": "presence", "roomId": "r", "userId": "bob", "name": None, "online": False},
        "badPresence": "unknown",
        "memberList": [{"userId": "a", "name": "A"}],
        "typed": {"kind": "typing", "roomId": "r", "userId": "bob", "name": "Bob"},
        "dm": ["boolean", True, "bob", "alice", ""],
        "joined": {"kind": "joined", "roomId": "r"},
    }


def test_after_a_reconnect_every_room_is_joined_again_and_what_was_missed_arrives(
    pages: Pages, stack: Stack
) -> None:
    lobby, dev = room(), room()
    # seed() numbers its client_msg_ids from s-0: a user of this test only, or a repeat of another test's
    # id would be acknowledged with that test's message.
    bob = f"bob-{dev[-8:]}"
    alice = pages.open("alice")
    frames = record_frames(alice)
    join(alice, "Alice", lobby)
    join_room(alice, dev)
    switch(alice, lobby)
    seed(stack, dev, 1, user=bob)
    expect(badge(alice, dev)).to_have_text("1")
    switch(alice, dev)
    expect(alice.locator("#messages .msg .text")).to_have_text(["old 000"])
    # Away from the rooms while the connection is down: in the direct conversation with Bob (listed in dev
    # as seen through his message).
    member(alice, bob).locator("button.dm-open").click()
    expect(alice.locator("#room-name")).to_have_text(bob)
    [connection_id] = stack.connection_ids(user_id="alice", room_id=lobby)
    assert stack.delete_connection(connection_id) == 204
    expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    seed(stack, dev, 3, user=bob)  # old 000 again (same client_msg_id: not stored twice), 001, 002
    seed(stack, lobby, 1, user=f"carol-{dev[-8:]}")
    expect(alice.locator("#status")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(badge(alice, dev)).to_have_text("2")
    expect(badge(alice, lobby)).to_have_text("1")
    switch(alice, dev)
    expect(alice.locator("#messages .msg .text")).to_have_text(["old 000", "old 001", "old 002"])
    switch(alice, lobby)
    expect(alice.locator("#messages .msg .text")).to_have_text(["old 000"])  # carol's
    sent = [frame for direction, frame in frames if direction == "sent"]
    joins = [frame["room_id"] for frame in sent if frame.get("action") == "join"]
    assert joins == [dev, dev], joins  # joined, then joined again on the new connection
    resumed = [f for f in sent if f.get("action") == "getHistory" and f.get("room_id") == dev]
    assert any("after" in f for f in resumed), "dev's missed messages were fetched with after="
    listed = {f["room_id"] for f in sent if f.get("action") == "listMembers"}
    assert listed == {lobby, dev}, listed  # never a user id taken for a room


def test_a_refused_join_is_explained_and_the_other_rooms_carry_on(pages: Pages) -> None:
    lobby, crowded = room(), room()
    alice, bob = pages.open("alice", width=375, height=700), pages.open("bob")

    def hold(frame: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> bool:
        if frame.get("action") == "join" and frame.get("room_id") == crowded:
            # As a server would answer the 51st room of a connection.
            reply({"action": "error", "code": "too_many_rooms", "message": "at most 50"})
            return True
        return False

    intercept(alice, hold)
    join(alice, "Alice", lobby)
    join(bob, "Bob", lobby)
    open_nav(alice)
    alice.fill("#new-room", crowded)
    alice.press("#new-room", "Enter")
    # Shown where it was typed, in the drawer, even though the page had switched to the new room.
    expect(alice.locator("#room-error")).to_be_visible()
    expect(alice.locator("#room-error")).to_contain_text(f"leave one before joining “{crowded}”")
    expect(room_item(alice, crowded)).to_have_count(0)
    expect(alice.locator("#room-name")).to_have_text(lobby)
    alice.keyboard.press("Escape")
    # The error was the join's: the next message goes out and is not taken for a failure.
    say(alice, "still here")
    expect(bob.locator("#messages .msg .text")).to_have_text(["still here"])
    expect(alice.locator("#outbox .pending")).to_have_count(0)
    expect(alice.locator("#composer-error")).to_be_hidden()


def test_a_join_refused_as_too_fast_is_made_again(pages: Pages) -> None:
    lobby, later = room(), room()
    alice = pages.open("alice")
    joins: list[str] = []

    def hold(frame: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> bool:
        if frame.get("action") != "join":
            return False
        joins.append(frame["room_id"])
        if len(joins) == 1:  # the per-user rate limit, as after a reconnect into many rooms
            reply({"action": "error", "code": "rate_limited", "message": "slow down"})
            return True
        return False

    intercept(alice, hold)
    join(alice, "Alice", lobby)
    join_room(alice, later)  # waits until joined
    assert joins == [later, later]
    expect(alice.locator("#room-error")).to_be_hidden()
    expect(alice.locator("#composer-error")).to_be_hidden()


def test_a_direct_message_from_one_tab_shows_in_the_senders_other_tab_as_their_own(pages: Pages) -> None:
    lobby = room()
    tag = lobby[-6:]  # users of this test only: a direct conversation outlives the test that wrote it
    tab1, tab2, bob = pages.open("alice-1"), pages.open("alice-2"), pages.open("bob")
    join(tab1, f"Alice {tag}", lobby)
    join(tab2, f"Alice {tag}", lobby)
    join(bob, f"Bob {tag}", lobby)
    expect(member(tab1, f"bob-{tag}")).to_have_attribute("data-online", "true")
    member(tab1, f"bob-{tag}").locator("button.dm-open").click()
    say(tab1, "from my laptop")
    expect(tab1.locator("#messages .msg.own .text")).to_have_text(["from my laptop"])
    # The other tab gets the conversation with Bob, the message as Alice's own, and nothing unread.
    item = tab2.locator(f'#dm-list li[data-user="bob-{tag}"]')
    expect(item).to_be_attached()
    expect(item.locator(".badge")).to_have_count(0)
    item.locator("button.conv").click()
    expect(tab2.locator("#messages .msg.own .text")).to_have_text(["from my laptop"])
    # Bob's, unread, under Alice's name.
    expect(bob.locator(f'#dm-list li[data-user="alice-{tag}"] .badge')).to_have_text("1")
    expect(bob.locator(f'#dm-list li[data-user="alice-{tag}"] .conv-name')).to_have_text(f"Alice {tag}")
    assert texts(bob) == []


def test_a_message_behind_an_unanswered_request_is_shown_as_sending_and_goes_after_its_timeout(
    pages: Pages,
) -> None:
    lobby = room()
    alice = pages.open("alice")
    held: list[str] = []

    def hold(frame: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> bool:
        if frame.get("action") == "listMembers" and not held:
            held.append(frame["room_id"])  # lost: never answered
            return True
        return False

    intercept(alice, hold)
    join(alice, "Alice", lobby)
    say(alice, "behind a lost request")
    pending = alice.locator("#outbox .pending")
    # Connected: on its way, not "waiting for the connection".
    expect(pending).to_have_attribute("data-state", "sending")
    expect(pending.locator(".pending-label")).to_have_text("Sending…")
    # The lost request times out (10 s) and the message goes.
    expect(alice.locator("#messages .msg.own .text")).to_have_text(["behind a lost request"], timeout=20_000)
    assert held == [lobby]
