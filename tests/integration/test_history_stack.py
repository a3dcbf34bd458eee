"""Nothing a member missed is lost (a dropped member resumes from history; a fan-out killed half way is
retried with the same client_msg_id), through the real local stack with real WebSocket clients."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack import Stack
from local_stack.testing import start_stack
from local_stack.testing.ws import ChatClient, merged, until

from .helpers import run_async


async def join(stack: Stack, user: str, room: str) -> ChatClient:
    return await ChatClient.join(stack.ws_url, user, room, ignore_presence=True)


async def resume(member: ChatClient, after: str) -> list[dict[str, Any]]:
    """Every message after ``after``, page by page until has_more is false."""
    fetched: list[dict[str, Any]] = []
    for _ in range(100):
        page = await member.history(after=after, limit=7)
        fetched += page["messages"]
        if not page["has_more"]:
            return fetched
        after = page["messages"][-1]["message_id"]
    raise AssertionError("has_more never became false")


@pytest.mark.timeout(120)
@run_async
async def test_dropped_member_resumes_after_its_last_seen_id_with_all_20_once_in_order(
    chat_stack: Stack,
) -> None:
    a = await join(chat_stack, "alice", "resume")
    b = await join(chat_stack, "bob", "resume")
    await a.send_acked("before", "c-before")
    assert await until(lambda: len(b.of("message")) == 1, 15)
    last_seen = b.of("message")[-1]["message_id"]
    b.abort()
    texts = [f"m{i:02d}" for i in range(20)]
    for i, text in enumerate(texts):
        await a.send_acked(text, f"c-{i}")
    assert await until(lambda: len(a.of("ack")) == 21, 30), a.of("ack")
    b2 = await join(chat_stack, "bob", "resume")
    fetched = await resume(b2, after=last_seen)
    shown = merged(b.of("message"), b2.of("message"), fetched)
    assert [m["message"] for m in fetched] == texts
    assert [m["message"] for m in shown] == ["before", *texts]
    assert [m["message_id"] for m in fetched] == [ack["message_id"] for ack in a.of("ack")[1:]]
    await a.close()
    await b2.close()


@pytest.mark.timeout(120)
@run_async
async def test_newest_page_after_reconnect_shows_the_conversation(chat_stack: Stack) -> None:
    a = await join(chat_stack, "alice", "reload")
    # Frames of one connection run concurrently (as on API Gateway): order comes from awaiting each ack.
    for i in range(5):
        await a.send_acked(f"r{i}", f"r-{i}")
    assert await until(lambda: len(a.of("ack")) == 5, 15)
    await a.close()
    again = await join(chat_stack, "alice", "reload")
    page = await again.history()
    assert [m["message"] for m in page["messages"]] == [f"r{i}" for i in range(5)]
    assert page["has_more"] is False
    assert [m["client_msg_id"] for m in page["messages"]] == [f"r-{i}" for i in range(5)]
    await again.close()


@pytest.fixture
def slow_fanout_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Each distinct @connections POST is held the first time and a broadcast posts one recipient at a time:
    a fan-out lasts long enough to be killed half way."""
    monkeypatch.setenv("LOCAL_STACK_FAULTS", "connections=timeout")
    monkeypatch.setenv("LOCAL_STACK_FAULT_HOLD_S", "6")
    with start_stack(max_workers=2, tf_vars={"broadcast_concurrency": "1"}) as stack:
        yield stack


def busy_worker_pid(stack: Stack, function: str) -> int | None:
    for worker in list(stack.pools[function].workers):
        if worker.current is not None and worker.process is not None:
            return worker.process.pid
    return None


@pytest.mark.timeout(180)
@run_async
async def test_worker_killed_mid_fanout_then_retry_with_same_id_reaches_everyone_once(
    slow_fanout_stack: Stack,
) -> None:
    stack = slow_fanout_stack

    # Four tabs of one user: a second tab announces no presence, so no $connect waits on held posts.
    members = [await join(stack, "alice", "killed") for _ in range(4)]
    sender = members[0]
    await sender.send({"action": "sendMessage", "message": "survives a crash", "client_msg_id": "c-crash"})
    # The ack (first post) and then one member after another, 5 s each: kill once someone has it.
    assert await until(lambda: any(m.of("message") for m in members), 40)
    pid = busy_worker_pid(stack, "send_message")
    assert pid is not None, "the fan-out finished before it could be killed"
    os.kill(pid, signal.SIGKILL)
    reached_before_kill = sum(1 for m in members if m.of("message"))
    assert reached_before_kill < len(members), "the fan-out was complete before the kill"
    # The gateway tells the sender its request failed; the sender retries with the same id.
    assert await until(lambda: sender.gateway_errors, 20), "the sender was not told of the failure"
    await sender.send({"action": "sendMessage", "message": "survives a crash", "client_msg_id": "c-crash"})
    assert await until(lambda: all(m.of("message") for m in members) and len(sender.of("ack")) >= 2, 60)
    await asyncio.sleep(0.5)
    ids = {ack["message_id"] for ack in sender.of("ack")}
    assert len(ids) == 1, sender.of("ack")
    for member in members:
        shown = merged(member.of("message"))
        assert [(m["message"], m["message_id"]) for m in shown] == [("survives a crash", *ids)]
    page = await members[1].history()
    assert [m["message_id"] for m in page["messages"]] == sorted(ids)
    for member in members:
        await member.close()
