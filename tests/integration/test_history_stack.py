"""Nothing a member missed is lost, through the real local stack with real WebSocket clients.

- B's TCP connection drops (no close frame) while A sends 20 messages; B reconnects and resumes with
  ``getHistory`` ``after`` its last seen id until ``has_more`` is false: all 20, once each, in order.
- A send_message worker is killed (SIGKILL) in the middle of a fan-out; the sender retries with the same
  ``client_msg_id``: every member ends with the message exactly once after dedupe by ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from local_stack import Stack, StackConfig, StackThread
from local_stack.config import DEFAULT_JWT_SECRET
from local_stack.tokens import make_token


def url(stack: Stack, user: str, room: str) -> str:
    return f"{stack.ws_url}?token={make_token(DEFAULT_JWT_SECRET, user)[0]}&room_id={room}"


@dataclass
class Member:
    """A chat client: what it saw live and what it fetched, merged by message_id as a client must."""

    ws: ClientConnection
    live: list[dict[str, Any]] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    gateway_errors: list[str] = field(default_factory=list)
    histories: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def join(cls, stack: Stack, user: str, room: str) -> Member:
        ws = await connect(url(stack, user, room), open_timeout=30, ping_interval=None, max_queue=None)
        member = cls(ws=ws)
        member.reader = asyncio.get_running_loop().create_task(member._read())
        return member

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = json.loads(raw)
                action = frame.get("action")
                if action == "message":
                    self.live.append(frame)
                elif action == "ack":
                    self.acks.append(frame)
                elif action == "history":
                    await self.histories.put(frame)
                else:
                    self.gateway_errors.append(str(frame.get("message") or frame.get("code")))

    async def send(self, text: str, client_msg_id: str | None = None) -> None:
        frame = {"action": "sendMessage", "message": text}
        if client_msg_id:
            frame["client_msg_id"] = client_msg_id
        await self.ws.send(json.dumps(frame))

    async def send_in_order(self, text: str, client_msg_id: str) -> None:
        """Send, then wait for the ack: sends that do not wait run as concurrent invocations (as API
        Gateway's do) and may be stored in either order."""
        acked = len(self.acks)
        await self.send(text, client_msg_id)
        assert await until(lambda: len(self.acks) > acked, 15), f"no ack for {client_msg_id}"

    async def history(self, **fields: Any) -> dict[str, Any]:
        await self.ws.send(json.dumps({"action": "getHistory", **fields}))
        return await asyncio.wait_for(self.histories.get(), 15)

    async def resume(self, after: str) -> list[dict[str, Any]]:
        """Every message after ``after``, page by page until has_more is false."""
        fetched: list[dict[str, Any]] = []
        for _ in range(100):
            page = await self.history(after=after, limit=7)
            fetched += page["messages"]
            if not page["has_more"]:
                return fetched
            after = page["messages"][-1]["message_id"]
        raise AssertionError("has_more never became false")

    def abort(self) -> None:
        """Vanish without a close frame (a dropped network)."""
        self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


def merged(*sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a client shows: each message_id once, in message_id order."""
    by_id = {m["message_id"]: m for source in sources for m in source}
    return [by_id[k] for k in sorted(by_id)]


async def until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


@pytest.fixture(scope="module")
def history_stack() -> Iterator[Stack]:
    config = StackConfig(
        ws_port=0, web_port=None, min_workers=1, max_workers=4, reload=False, echo_logs=False
    )
    with StackThread(config) as stack:
        yield stack


@pytest.mark.timeout(120)
def test_dropped_member_resumes_after_its_last_seen_id_with_all_20_once_in_order(
    history_stack: Stack,
) -> None:
    async def run() -> None:
        a = await Member.join(history_stack, "alice", "resume")
        b = await Member.join(history_stack, "bob", "resume")
        await a.send_in_order("before", "c-before")
        assert await until(lambda: len(b.live) == 1, 15)
        last_seen = b.live[-1]["message_id"]
        b.abort()
        texts = [f"m{i:02d}" for i in range(20)]
        for i, text in enumerate(texts):
            await a.send_in_order(text, f"c-{i}")
        assert await until(lambda: len(a.acks) == 21, 30), a.acks
        b2 = await Member.join(history_stack, "bob", "resume")
        fetched = await b2.resume(after=last_seen)
        shown = merged(b.live, b2.live, fetched)
        assert [m["message"] for m in fetched] == texts
        assert [m["message"] for m in shown] == ["before", *texts]
        assert [m["message_id"] for m in fetched] == [ack["message_id"] for ack in a.acks[1:]]
        await a.close()
        await b2.close()

    asyncio.run(run())


@pytest.mark.timeout(120)
def test_newest_page_after_reconnect_shows_the_conversation(history_stack: Stack) -> None:
    async def run() -> None:
        a = await Member.join(history_stack, "alice", "reload")
        # Frames of one connection run concurrently (as on API Gateway): order comes from awaiting each ack.
        for i in range(5):
            await a.send_in_order(f"r{i}", f"r-{i}")
        assert await until(lambda: len(a.acks) == 5, 15)
        await a.close()
        again = await Member.join(history_stack, "alice", "reload")
        page = await again.history()
        assert [m["message"] for m in page["messages"]] == [f"r{i}" for i in range(5)]
        assert page["has_more"] is False
        assert [m["client_msg_id"] for m in page["messages"]] == [f"r-{i}" for i in range(5)]
        await again.close()

    asyncio.run(run())


@pytest.fixture
def slow_fanout_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Every distinct @connections POST is held 5 s the first time (then retried by the sender and passed),
    and a broadcast posts one recipient at a time: a fan-out lasts long enough to be killed half way."""
    monkeypatch.setenv("LOCAL_STACK_FAULTS", "connections=timeout")
    monkeypatch.setenv("LOCAL_STACK_FAULT_HOLD_S", "6")
    config = StackConfig(
        ws_port=0,
        web_port=None,
        min_workers=1,
        max_workers=2,
        reload=False,
        echo_logs=False,
        tf_vars={"broadcast_concurrency": "1"},
    )
    with StackThread(config) as stack:
        yield stack


def busy_worker_pid(stack: Stack, function: str) -> int | None:
    for worker in list(stack.pools[function].workers):
        if worker.current is not None and worker.process is not None:
            return worker.process.pid
    return None


@pytest.mark.timeout(180)
def test_worker_killed_mid_fanout_then_retry_with_same_id_reaches_everyone_once(
    slow_fanout_stack: Stack,
) -> None:
    stack = slow_fanout_stack

    async def run() -> None:
        # Four tabs of one user: a second tab announces no presence, so no $connect waits on held posts.
        members = [await Member.join(stack, "alice", "killed") for _ in range(4)]
        sender = members[0]
        await sender.send("survives a crash", "c-crash")
        # The ack (first post) and then one member after another, 5 s each: kill once someone has it.
        assert await until(lambda: any(m.live for m in members), 40)
        pid = busy_worker_pid(stack, "send_message")
        assert pid is not None, "the fan-out finished before it could be killed"
        os.kill(pid, signal.SIGKILL)
        reached_before_kill = sum(1 for m in members if m.live)
        assert reached_before_kill < len(members), "the fan-out was complete before the kill"
        # The gateway tells the sender its request failed; the sender retries with the same id.
        assert await until(lambda: sender.gateway_errors, 20), "the sender was not told of the failure"
        await sender.send("survives a crash", "c-crash")
        assert await until(lambda: all(m.live for m in members) and len(sender.acks) >= 2, 60)
        await asyncio.sleep(0.5)
        ids = {ack["message_id"] for ack in sender.acks}
        assert len(ids) == 1, sender.acks
        for member in members:
            shown = merged(member.live)
            assert [(m["message"], m["message_id"]) for m in shown] == [("survives a crash", *ids)]
        page = await members[1].history()
        assert [m["message_id"] for m in page["messages"]] == sorted(ids)
        for member in members:
            await member.close()

    asyncio.run(run())
