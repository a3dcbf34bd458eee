"""The browser chat client end to end: real Chromium, real local stack, real Lambda functions."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Pages, Stack

pytestmark = pytest.mark.browser


def room() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


def join(page: Any, name: str, room_id: str) -> None:
    page.fill("#name", name)
    page.fill("#room", room_id)
    page.press("#room", "Enter")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")


def joined(pages: Pages, room_id: str, *names: str) -> list[Any]:
    """A page for each name (labelled with it in lower case), then each joined to ``room_id`` as it."""
    opened = [pages.open(name.lower()) for name in names]
    for page, name in zip(opened, names, strict=True):
        join(page, name, room_id)
    return opened


def join_remote(page: Any, stack: Stack, token: str, room_id: str) -> None:
    if page.locator("#remote-fields").is_hidden():
        page.click("#mode-toggle")
    page.fill("#ws-url", stack.ws_url)
    page.fill("#token", token)
    page.fill("#room", room_id)
    page.click("#join-button")


def say(page: Any, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def texts(page: Any) -> list[str]:
    return page.locator("#messages .msg .text").all_text_contents()


def expect_message(page: Any, text: str) -> None:
    expect(page.locator("#messages .msg .text").filter(has_text=text).first).to_be_visible()


def test_two_pages_exchange_messages_and_other_room_sees_nothing(pages: Pages) -> None:
    shared, other = room(), room()
    alice, bob, carol = pages.open("alice"), pages.open("bob", width=375, height=700), pages.open("carol")
    join(alice, "Alice", shared)
    join(bob, "Bob", shared)
    join(carol, "Carol", other)

    say(alice, "Hi Bob")
    expect_message(bob, "Hi Bob")
    # Shift+Enter is a newline, Enter sends.
    bob.fill("#message", "Hello Alice")
    bob.press("#message", "Shift+Enter")
    bob.type("#message", "second line")
    bob.press("#message", "Enter")
    expect(alice.locator("#messages .msg .text").last).to_have_text("Hello Alice\nsecond line")
    expect(bob.locator("#message")).to_have_value("")

    # Sender, time and own messages set apart.
    mine = alice.locator("#messages .msg.own").first
    expect(mine.locator(".text")).to_have_text("Hi Bob")
    expect(mine.locator(".author")).to_have_text("Alice")
    theirs = alice.locator("#messages .msg:not(.own)").first
    expect(theirs.locator(".author")).to_have_text("Bob")
    assert theirs.locator("time").get_attribute("datetime")
    expect(bob.locator("#messages .msg.own .text")).to_have_text(["Hello Alice\nsecond line"])

    # Carol, in another room, saw nothing; her own message still works.
    say(carol, "only here")
    expect_message(carol, "only here")
    assert texts(carol) == ["only here"]
    assert "only here" not in texts(alice) + texts(bob)
    assert texts(alice) == texts(bob) == ["Hi Bob", "Hello Alice\nsecond line"]


def test_markup_is_rendered_as_text_and_runs_nothing(pages: Pages) -> None:
    room_id = room()
    alice, bob = pages.open("alice"), pages.open("bob")
    join(alice, "<b>Alice</b>", room_id)
    join(bob, "Bob", room_id)
    payloads = [
        '<img src=x onerror="window.__pwned = 1; alert(1)">',
        "<script>window.__pwned = 2; alert(2)</script>",
        '"><svg onload=alert(3)> & &amp; </ol>',
    ]
    for text in payloads:
        say(alice, text)
    expect(bob.locator("#messages .msg .text")).to_have_text(payloads)
    expect(bob.locator("#messages .msg .author").first).to_have_text("<b>Alice</b>")
    for page in (alice, bob):
        assert page.locator("#messages img, #messages script, #messages svg, #messages b").count() == 0
        assert page.evaluate("window.__pwned") is None
    # pages.problems (checked at teardown) would hold any dialog, page error or CSP report.


def test_over_long_message_is_explained_and_not_broadcast(pages: Pages) -> None:
    alice, bob = joined(pages, room(), "Alice", "Bob")
    too_long = "é" * 2049  # 4,098 UTF-8 bytes: over the 4,096-byte limit though only 2,049 characters
    say(alice, too_long)
    error = alice.locator("#composer-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Message too long — 4,096 bytes at most")
    expect(error).to_have_attribute("data-code", "message_too_large")
    # The text is given back to be shortened, not lost.
    expect(alice.locator("#message")).to_have_value(too_long)
    # Nothing was broadcast: the next message is the first either page sees.
    alice.fill("#message", "short one")
    alice.press("#message", "Enter")
    expect_message(bob, "short one")
    expect_message(alice, "short one")
    assert texts(bob) == ["short one"]
    assert texts(alice) == ["short one"]
    expect(error).to_be_hidden()


def test_server_side_delete_shows_reconnecting_and_recovers(pages: Pages, stack: Stack) -> None:
    room_id = room()
    alice, bob = joined(pages, room_id, "Alice", "Bob")
    [connection_id] = stack.connection_ids(user_id="alice", room_id=room_id)
    assert stack.delete_connection(connection_id) == 204
    expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    expect(alice.locator("#status-text")).to_contain_text("Reconnecting in")
    expect(alice.locator("#status")).to_have_attribute("data-state", "connected", timeout=20_000)
    say(alice, "back again")
    expect_message(bob, "back again")
    expect(bob.locator("#status")).to_have_attribute("data-state", "connected")


def test_stack_restart_shows_reconnecting_and_queued_message_is_sent(
    pages: Pages, stack: Stack, artifacts: Path
) -> None:
    alice, bob = joined(pages, room(), "Alice", "Bob")
    stack.stop()
    try:
        expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=5_000)
        expect(alice.locator("#status-text")).to_contain_text("Reconnecting in")
        # Typed while offline: kept and shown as waiting, then sent when the connection is back.
        say(alice, "sent while the stack was down")
        expect(alice.locator("#outbox .pending")).to_have_attribute("data-state", "queued")
        alice.screenshot(path=str(artifacts / "reconnecting-1280x800.png"))
    finally:
        stack.start()  # the stack is shared: never leave it down for the tests that follow
    for page in (alice, bob):
        expect(page.locator("#status")).to_have_attribute("data-state", "connected", timeout=45_000)
    # The server's echo to the sender proves it was stored and broadcast.
    expect(alice.locator("#messages .msg.own .text")).to_have_text(["sent while the stack was down"])
    expect(alice.locator("#outbox .pending")).to_have_count(0)
    say(bob, "and we can talk again")
    expect_message(alice, "and we can talk again")


def test_expired_token_is_explained(pages: Pages, stack: Stack, artifacts: Path) -> None:
    room_id = room()
    page = pages.open("dave", width=375, height=700)
    # Against a deployed API the user pastes a token; one that has expired is explained before connecting.
    join_remote(page, stack, stack.token("dave", name="Dave", ttl_s=-600), room_id)
    expect(page.locator("#join-error")).to_contain_text("Your session expired")

    # One that expires while connected: the next handshake is refused (401, which a browser only sees
    # as a failed connection) and the page explains why instead of retrying forever.
    join_remote(page, stack, stack.token("dave", name="Dave", ttl_s=3), room_id)
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    [connection_id] = stack.connection_ids(user_id="dave", room_id=room_id)
    time.sleep(3.2)  # let the token expire while connected
    stack.delete_connection(connection_id)
    expect(page.locator("#status")).to_have_attribute("data-state", "closed", timeout=10_000)
    expect(page.locator("#status-detail")).to_contain_text("Your session expired")
    page.screenshot(path=str(artifacts / "expired-375x700.png"))
    page.click("#retry-now")  # "Sign in again"
    expect(page.locator("#join-error")).to_contain_text("Your session expired")
    expect(page.locator("#token")).to_be_focused()


def test_token_in_subprotocol_instead_of_url(pages: Pages) -> None:
    room_id = room()
    sockets: list[Any] = []
    alice = pages.open("alice", config={"tokenTransport": "subprotocol"})
    alice.on("websocket", lambda socket: sockets.append(socket))
    bob = pages.open("bob")
    join(alice, "Alice", room_id)
    join(bob, "Bob", room_id)
    assert sockets and "token=" not in sockets[-1].url and f"room_id={room_id}" in sockets[-1].url
    say(alice, "no token in my URL")
    expect_message(bob, "no token in my URL")
    say(bob, "and back")
    expect_message(alice, "and back")


def test_screenshots(pages: Pages, artifacts: Path) -> None:
    """Not asserted pixel by pixel: saved on every run for a person to look at."""
    room_id = "design-review"
    wide = pages.open("wide", width=1280, height=800)
    narrow = pages.open("narrow", width=375, height=700)
    wide.screenshot(path=str(artifacts / "join-1280x800.png"))
    narrow.screenshot(path=str(artifacts / "join-375x700.png"))
    join(wide, "Ada Lovelace", room_id)
    join(narrow, "Grace Hopper", room_id)
    say(wide, "Morning! Did the deploy go out?")
    expect_message(narrow, "Did the deploy go out?")
    narrow.fill("#message", "Yes — terraform apply finished at 09:12.")
    narrow.press("#message", "Shift+Enter")
    narrow.type("#message", "All three functions are on the new image.")
    narrow.press("#message", "Enter")
    expect_message(wide, "All three functions")
    say(wide, "Great. A long line wraps: " + "averyveryverylongwordwithoutanyspaces" * 4)
    say(wide, "And <b>markup</b> stays text.")
    expect_message(narrow, "stays text")
    wide.fill("#message", "x" * 4100)
    wide.press("#message", "Enter")
    expect(wide.locator("#composer-error")).to_be_visible()
    wide.fill("#message", "")
    dark = pages.open("dark", width=375, height=700, color_scheme="dark")
    join(dark, "Linus", room_id)
    say(dark, "Dark mode here.")
    expect_message(wide, "Dark mode here.")
    wide.screenshot(path=str(artifacts / "chat-1280x800.png"))
    narrow.screenshot(path=str(artifacts / "chat-375x700.png"))
    dark.screenshot(path=str(artifacts / "chat-dark-375x700.png"))
    for name in ("chat-1280x800.png", "chat-375x700.png"):
        assert (artifacts / name).stat().st_size > 10_000


def test_keyboard_only_and_readable_at_320px(pages: Pages) -> None:
    page = pages.open("kim", width=320, height=640)
    # Labelled inputs; the first empty field has the focus.
    expect(page.get_by_label("Your name")).to_be_focused()
    page.keyboard.type("Kim")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Room", exact=True)).to_be_focused()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(room())
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    # The composer has the focus after joining; Enter sends.
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.type("typed with the keyboard only, and a long unbroken token: " + "x" * 120)
    page.keyboard.press("Enter")
    expect_message(page, "keyboard only")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()
    # The message list is an ARIA live region (role log).
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(log.get_by_role("listitem")).to_have_count(1)
    # Nothing overflows sideways at 320 px.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    box = page.locator("#messages .msg .text").last.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 320


def test_protocol_logic_backoff_and_token_transport(pages: Pages) -> None:
    page = pages.open("logic")
    result = page.evaluate(
        """async () => {
            const p = await import("./protocol.js");
            const delays = (random) => [0, 1, 2, 3, 4, 5, 6, 10].map((n) => p.backoffDelay(n, { random }));
            const claims = btoa(JSON.stringify({ sub: "a", exp: 1, rooms: ["x"] })).replace(/=+$/, "");
            const token = `h.${claims}.s`;
            return {
                low: delays(() => 0), high: delays(() => 0.999999),
                query: p.connectRequest("ws://h/dev", { token: "T", roomId: "r 1" }),
                sub: p.connectRequest("ws://h/dev", { token: "T", roomId: "r", transport: "subprotocol" }),
                expired: p.diagnoseHandshake({ token, roomId: "x", nowSeconds: 100 }),
                forbidden: p.diagnoseHandshake({ token, roomId: "y", nowSeconds: 0 }),
                fine: p.diagnoseHandshake({ token, roomId: "x", nowSeconds: 0 }),
                badRoom: p.diagnoseHandshake({ token, roomId: "no spaces", nowSeconds: 0 }),
                bytes: p.utf8Bytes("é😀"),
            };
        }"""
    )
    # Exponential with jitter: each delay lies in [step/2, step], step = 1 s * 2^n, capped at 30 s.
    assert result["low"] == [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
    assert result["high"] == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    assert result["query"] == {"url": "ws://h/dev?token=T&room_id=r+1", "protocols": []}
    assert result["sub"] == {"url": "ws://h/dev?room_id=r", "protocols": ["chat.v1", "bearer.T"]}
    assert result["expired"]["status"] == 401 and "Your session expired" in result["expired"]["text"]
    assert result["forbidden"]["status"] == 403
    assert result["fine"] is None
    assert result["badRoom"]["status"] == 400
    assert result["bytes"] == 6
