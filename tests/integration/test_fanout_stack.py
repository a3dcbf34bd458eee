"""Sharded fan-out through the real local stack: 500 real WebSocket clients in one room, FANOUT_SHARD_SIZE
50, so every broadcast is cut into 10 shard jobs on the fanout queue and posted by the fanout function.

- every client gets every message exactly once, through several shards;
- a fanout worker killed (SIGKILL) while it posts: its shard comes back after the visibility timeout
  (16 s here, over a fanout timeout of 16 s: terraform/fanout_fast) and every client ends with the message
  exactly once after dedupe;
- ``python -m local_stack publish`` posts to the room from a backend's system sender.

The 500 clients are 10 users' tabs (presence is announced per user, so joining stays 10 broadcasts), opened
20 at a time. The test prints how long connecting and each step took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from local_stack import Stack, StackConfig, StackThread
from local_stack.gateway import Gateway
from local_stack.runtime import WorkerState
from local_stack.terraform import TerraformError, event_source_mappings, load_model, queue_specs

from .helpers import HERE, REPO

ROOM = "stadium"
CLIENTS = 500
USERS = 10
SHARD_SIZE = 50
CONNECT_CONCURRENCY = 20
FANOUT_FAST = HERE / "terraform" / "fanout_fast"
# At most the fanout_fast queue's visibility timeout (16 s), as Lambda requires, and above the 12 s a shard
# keeps free before its deadline (shared.chat.SHARD_RESERVE_SECONDS), or it would post nothing.
FANOUT_TIMEOUT = 16


def fanout_fast_dirs(tmp: Path) -> tuple[Path, ...]:
    """terraform/, fanout_fast/ (the queue's visibility timeout) and, in ``tmp``, terraform/functions.tf with
    fanout's timeout lowered to FANOUT_TIMEOUT: ``local.functions`` is one value, which an override replaces
    whole, so it is derived from the module's own file rather than copied."""
    source = (REPO / "terraform" / "functions.tf").read_text()
    lowered, count = re.subn(
        r"(\n    fanout = \{\n(?:      .*\n)*?      timeout\s+= )60\n", rf"\g<1>{FANOUT_TIMEOUT}\n", source
    )
    assert count == 1, "terraform/functions.tf: fanout's timeout = 60 not found"
    (tmp / "functions.tf").write_text(lowered)
    return (REPO / "terraform", FANOUT_FAST, tmp)


class PostGate:
    """Holds ``@connections`` POSTs once ``arm(after)`` let ``after`` of them through, until
    ``release()``: a slow management API at a moment the test chooses."""

    def __init__(self) -> None:
        self.after: int | None = None
        self.passed = 0
        self.held = 0
        self.released = threading.Event()

    def arm(self, after: int) -> None:
        self.passed, self.held, self.after = 0, 0, after
        self.released.clear()

    def release(self) -> None:
        self.after = None
        self.released.set()

    async def wait(self) -> None:
        if self.after is None:
            return
        if self.passed < self.after:
            self.passed += 1
            return
        self.held += 1
        deadline = time.monotonic() + 30  # never a hung test
        while not self.released.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


GATE = PostGate()


@dataclass
class Client:
    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.frames.append(json.loads(raw))

    def message_ids(self) -> Counter[str]:
        return Counter(f["message_id"] for f in self.frames if f.get("action") == "message")


@pytest.fixture(scope="module")
def fanout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    original = Gateway._management

    async def gated(self: Gateway, request: Any) -> Any:
        if request.method == "POST":
            await request.read()  # read before holding (cached for the handler): a killed poster's is whole
            await GATE.wait()
        return await original(self, request)

    state_dir = tmp_path_factory.mktemp("state")
    config = StackConfig(
        ws_port=0,
        web_port=None,
        terraform_dirs=fanout_fast_dirs(tmp_path_factory.mktemp("fanout_timeout")),
        min_workers=1,
        max_workers=4,
        reload=False,
        echo_logs=False,
        function_settings={"FANOUT_SHARD_SIZE": str(SHARD_SIZE)},
        state_dir=state_dir,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Gateway, "_management", gated)
        with StackThread(config, start_timeout_s=120) as stack:
            yield stack


def test_the_fast_setup_is_one_aws_allows_and_the_module_timeout_over_it_is_refused(tmp_path: Path) -> None:
    model = load_model(fanout_fast_dirs(tmp_path))
    assert model.functions["fanout"].timeout == FANOUT_TIMEOUT
    assert queue_specs(model)["fanout"].visibility_timeout_s == 16
    assert event_source_mappings(model)["fanout"].function == "fanout"
    # the queue's 16 s under the module's own 60 s fanout timeout: CreateEventSourceMapping would refuse it
    config = StackConfig(
        ws_port=0,
        web_port=None,
        terraform_dirs=(REPO / "terraform", FANOUT_FAST),
        reload=False,
        echo_logs=False,
    )
    with pytest.raises(RuntimeError) as failure, StackThread(config):
        pass
    cause = failure.value.__cause__
    assert isinstance(cause, TerraformError)
    assert "visibility_timeout_seconds = 16, below local.functions.fanout.timeout = 60" in str(cause)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@dataclass
class Room:
    clients: list[Client]
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def send(self, text: str, sender: int = 0) -> str:
        """``sendMessage`` from one client; the message id from its ack."""
        client = self.clients[sender]
        acks = len([f for f in client.frames if f.get("action") == "ack"])
        frame = {
            "action": "sendMessage",
            "room_id": ROOM,
            "message": text,
            "client_msg_id": f"c-{time.time_ns()}",
        }
        self.run(client.ws.send(json.dumps(frame)))
        assert wait_until(lambda: len([f for f in client.frames if f.get("action") == "ack"]) > acks, 30)
        return str([f for f in client.frames if f.get("action") == "ack"][acks]["message_id"])

    def copies(self, message_id: str) -> list[int]:
        """How many times each client got the message."""
        return [c.message_ids()[message_id] for c in self.clients]


@pytest.fixture(scope="module")
def room(fanout_stack: Stack) -> Iterator[Room]:
    """500 connected clients in ROOM, read by an event loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def open_all() -> list[Client]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int) -> Client:
            async with gate:
                token = fanout_stack.token(f"fan{i % USERS}")
                ws = await connect(
                    f"{fanout_stack.ws_url}?token={token}&room_id={ROOM}",
                    open_timeout=30,
                    ping_interval=None,
                    max_queue=None,
                )
            client = Client(ws)
            client.reader = asyncio.get_running_loop().create_task(client.read())
            return client

        return list(await asyncio.gather(*(one(i) for i in range(CLIENTS))))

    started = time.monotonic()
    room = Room([], loop)
    room.clients = room.run(open_all(), 240)
    print(f"\n{CLIENTS} clients connected in {time.monotonic() - started:.1f} s")
    yield room

    async def close_all() -> None:
        await asyncio.gather(*(c.ws.close() for c in room.clients), return_exceptions=True)

    with contextlib.suppress(Exception):
        room.run(close_all(), 60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def fanout_stats(stack: Stack) -> Any:
    assert stack.event_sources is not None
    return stack.event_sources.pollers["fanout"].stats


@pytest.mark.timeout(300)
def test_every_client_gets_every_message_once_through_several_shards(fanout_stack: Stack, room: Room) -> None:
    started = time.monotonic()
    before = fanout_stats(fanout_stack).deleted
    ids = [room.send(f"hello stadium {i}", sender=i) for i in range(3)]
    for message_id in ids:
        assert wait_until(lambda m=message_id: min(room.copies(m)) >= 1, 60), Counter(room.copies(message_id))
    time.sleep(1.0)  # a repeat would have arrived by now
    for message_id in ids:
        assert Counter(room.copies(message_id)) == {1: CLIENTS}  # once each, no repeat at all
    # every message went out as ceil(500 / 50) = 10 shard jobs, each received once and deleted
    assert fanout_stats(fanout_stack).deleted - before == 3 * CLIENTS // SHARD_SIZE
    assert fanout_stack.queues is not None and fanout_stack.queues.depth("fanout") == 0
    print(f"3 messages to {CLIENTS} clients through shards in {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(300)
def test_a_fanout_worker_killed_mid_shard_is_redelivered_and_everyone_ends_with_it_once(
    fanout_stack: Stack, room: Room
) -> None:
    started = time.monotonic()
    pool = fanout_stack.pools["fanout"]
    redelivered_before = sum(1 for n in fanout_stats(fanout_stack).receive_counts.values() if n > 1)
    GATE.arm(after=60)  # the ack and the shards' first posts pass, then the management API stalls
    try:
        message_id = room.send("survive this")
        assert wait_until(lambda: GATE.held > 0 and any(w.current for w in pool.workers), 30)
        victim = next(w for w in pool.workers if w.current is not None and w.process is not None)
        assert victim.process is not None
        os.killpg(victim.process.pid, signal.SIGKILL)  # mid-shard: some of its members got the message
        assert wait_until(lambda: victim.state is WorkerState.DEAD, 10)
    finally:
        GATE.release()

    def redelivered() -> int:
        return sum(1 for n in fanout_stats(fanout_stack).receive_counts.values() if n > 1)

    assert wait_until(lambda: redelivered() > redelivered_before, 30)  # after the visibility timeout (16 s)
    ok = wait_until(lambda: min(room.copies(message_id)) >= 1, 60)
    assert ok, (
        Counter(room.copies(message_id)),
        [line for line in fanout_stack.logs if line.startswith(("[sqs]", "[fanout]"))][-40:],
    )
    time.sleep(1.0)
    copies = Counter(room.copies(message_id))
    assert set(copies) <= {1, 2}, copies  # at least once; a repeat only from the redelivered shard
    assert copies[2] <= SHARD_SIZE, copies
    deduped = [len(c.message_ids().keys() & {message_id}) for c in room.clients]
    assert deduped == [1] * CLIENTS
    assert any("Runtime.ExitError" in line for line in fanout_stack.logs if line.startswith("[sqs]"))
    assert redelivered() == redelivered_before + 1  # exactly the killed shard came back
    assert fanout_stack.queues is not None
    assert wait_until(
        lambda: fanout_stack.queues is not None and fanout_stack.queues.depth("fanout") == 0, 20
    )
    print(f"killed shard redelivered, all {CLIENTS} have it, in {time.monotonic() - started:.1f} s; {copies}")


@pytest.mark.timeout(120)
def test_publish_from_the_cli_reaches_the_whole_room(fanout_stack: Stack, room: Room) -> None:
    env = dict(os.environ, LOCAL_STACK_STATE_DIR=str(fanout_stack.config.state_dir))
    done = subprocess.run(
        [sys.executable, "-m", "local_stack", "publish", "--room", ROOM, "--message", "from the backend",
         "--ws-port", str(fanout_stack.ws_port)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    message_id = response["message_id"]
    assert wait_until(lambda: min(room.copies(message_id)) >= 1, 60)
    frame = next(f for f in room.clients[7].frames if f.get("message_id") == message_id)
    assert frame["message"] == "from the backend"
