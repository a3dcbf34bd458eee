"""The browser client and stored messages: history, paging back, resuming, acks, the byte counter."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from .conftest import Pages, Stack, intercept
from .test_chat import expect_message, join, joined, room, say, texts

pytestmark = pytest.mark.browser


def seed(stack: Stack, room_id: str, count: int, user: str = "seeder", first: int = 0) -> None:
    """``count`` stored messages ("old {first:03d}" on) from plain WebSocket clients, each acknowledged
    before the next (15 per user: within the per-user rate limit's burst)."""
    for start in range(first, first + count, 15):
        sender = f"{user}{(start - first) // 15}" if count > 15 else user
        with connect(stack.url(sender, room_id), open_timeout=15) as ws:
            for i in range(start, min(first + count, start + 15)):
                body = {"action": "sendMessage", "message": f"old {i:03d}", "client_msg_id": f"s-{i}"}
                ws.send(json.dumps(body))
                while json.loads(ws.recv(timeout=15)).get("action") != "ack":
                    pass


def test_reload_keeps_the_conversation(pages: Pages) -> None:
    room_id = room()
    alice, bob = joined(pages, room_id, "Alice", "Bob")
    say(alice, "one")
    expect_message(bob, "one")
    say(bob, "two")
    expect_message(alice, "two")
    alice.reload()
    alice.wait_for_selector("body[data-ready=true]")
    join(alice, "Alice", room_id)
    expect(alice.locator("#messages .msg .text")).to_have_text(["one", "two"])
    expect(alice.locator("#messages .msg.own .delivery")).to_have_count(1)
    # A late joiner sees what was said before it came.
    carol = pages.open("carol")
    join(carol, "Carol", room_id)
    expect(carol.locator("#messages .msg .text")).to_have_text(["one", "two"])


def test_scrolling_to_the_top_loads_older_pages_and_keeps_the_place(pages: Pages, stack: Stack) -> None:
    room_id = room()
    seed(stack, room_id, 120)
    page = pages.open("reader", height=600)
    join(page, "Reader", room_id)
    expect(page.locator("#messages .msg")).to_have_count(50)
    assert texts(page)[0] == "old 070" and texts(page)[-1] == "old 119"
    anchor = page.locator("#messages .msg .text", has_text="old 070")
    page.evaluate("document.getElementById('scroller').scrollTop = 0")
    expect(page.locator("#messages .msg")).to_have_count(100)
    # The message that was at the top is still on screen: the older page went in above it.
    box = anchor.bounding_box()
    assert box is not None and 0 <= box["y"] <= 600, box
    page.evaluate("document.getElementById('scroller').scrollTop = 0")
    expect(page.locator("#messages .msg")).to_have_count(120)
    assert texts(page) == [f"old {i:03d}" for i in range(120)]
    page.evaluate("document.getElementById('scroller').scrollTop = 0")
    page.wait_for_timeout(500)
    expect(page.locator("#messages .msg")).to_have_count(120)  # has_more was false: nothing more asked


def test_reconnect_fetches_what_was_missed_once_and_in_order(pages: Pages, stack: Stack) -> None:
    room_id = room()
    alice = pages.open("alice")
    join(alice, "Alice", room_id)
    seed(stack, room_id, 1, user="bob")
    expect_message(alice, "old 000")
    [connection_id] = stack.connection_ids(user_id="alice", room_id=room_id)
    assert stack.delete_connection(connection_id) == 204
    expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    seed(stack, room_id, 7, user="bob", first=1)
    expect(alice.locator("#status")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(alice.locator("#messages .msg .text")).to_have_text([f"old {i:03d}" for i in range(8)])


def test_retry_after_a_gateway_error_reuses_the_client_msg_id(pages: Pages) -> None:
    room_id = room()
    alice, bob = pages.open("alice"), pages.open("bob")
    sent: list[dict[str, Any]] = []
    swallowed: list[str] = []

    def hold(frame: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> bool:
        if frame.get("action") != "sendMessage":
            return False
        sent.append(frame)
        if swallowed:
            return False
        # As after a worker killed mid fan-out: the server may have stored it, the page is told
        # "Internal server error" and nothing else.
        swallowed.append(frame["client_msg_id"])
        reply({"message": "Internal server error", "connectionId": "x", "requestId": "y"})
        return True

    intercept(alice, hold)
    join(alice, "Alice", room_id)
    join(bob, "Bob", room_id)
    say(alice, "exactly once")
    pending = alice.locator("#outbox .pending")
    expect(pending).to_have_attribute("data-state", "failed")
    expect(alice.locator("#composer-error")).to_contain_text("Retry it")
    pending.locator("button.retry").click()
    expect_message(bob, "exactly once")
    expect_message(alice, "exactly once")
    expect(pending).to_have_count(0)
    assert [f["client_msg_id"] for f in sent] == swallowed * 2
    assert texts(bob) == ["exactly once"] and texts(alice) == ["exactly once"]


def test_sending_shows_sent_once_acknowledged(pages: Pages) -> None:
    room_id = room()
    alice = pages.open("alice")
    acks: list[str] = []
    alice.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived", lambda payload: acks.append(payload) if '"ack"' in payload else None
        ),
    )
    join(alice, "Alice", room_id)
    say(alice, "hello")
    expect(alice.locator("#messages .msg.own .delivery")).to_have_text(["✓ sent"])
    expect(alice.locator("#outbox .pending")).to_have_count(0)
    [ack] = [json.loads(a) for a in acks]
    assert alice.locator("#messages .msg.own").get_attribute("data-message-id") == ack["message_id"]


@pytest.mark.parametrize(
    ("text", "shown"), [("é" * 1600, "3,200 / 4,096 bytes"), ("x" * 3100, "3,100 / 4,096")]
)
def test_size_counter_counts_utf8_bytes_not_characters(pages: Pages, text: str, shown: str) -> None:
    page = pages.open("counter")
    join(page, "Counter", room())
    page.fill("#message", text)
    # 1,600 characters of "é" are 3,200 bytes: past 75 % of the limit, so the counter shows them; a counter
    # of characters would show nothing (1,600 is under 3,072) or "1,600".
    expect(page.locator("#byte-count")).to_contain_text(shown)
    page.fill("#message", "é" * 2049)
    expect(page.locator("#byte-count")).to_have_text("4,098 / 4,096 bytes — too long")
