"""Sharded fan-out through the real local stack: 500 clients (10 users' tabs, so joining stays 10 presence
broadcasts) in one room with FANOUT_SHARD_SIZE 50, so every broadcast is 10 shard jobs on the fanout queue."""

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local_stack import Stack, StackThread
from local_stack import testing as kit
from local_stack.gateway import Gateway
from local_stack.runtime import WorkerState
from local_stack.terraform import TerraformError, event_source_mappings, load_model, queue_specs
from local_stack.testing.ws import ChatClient

from .helpers import HERE, REPO, start_failure, wait_until

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
    """terraform/, fanout_fast/ and terraform/functions.tf with fanout's timeout FANOUT_TIMEOUT, in ``tmp``:
    an override replaces ``local.functions`` whole, so it is derived from the module's file, not copied."""
    source = (REPO / "terraform" / "functions.tf").read_text()
    lowered, count = re.subn(
        r"(\n    fanout = \{\n(?:      .*\n)*?      timeout\s+= )60\n", rf"\g<1>{FANOUT_TIMEOUT}\n", source
    )
    assert count == 1, "terraform/functions.tf: fanout's timeout = 60 not found"
    (tmp / "functions.tf").write_text(lowered)
    return (REPO / "terraform", FANOUT_FAST, tmp)


class PostGate:
    """Holds ``@connections`` POSTs once ``arm(after)`` let ``after`` of them through, until
    ``release()``: a slow management API at a moment the test chooses. An ack always passes, uncounted:
    send_message posts it once every shard job is queued, and the fanout workers may by then have posted
    ``after`` frames already."""

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

    async def wait(self, body: bytes) -> None:
        if self.after is None or _is_ack(body):
            return
        if self.passed < self.after:
            self.passed += 1
            return
        self.held += 1
        deadline = time.monotonic() + 30  # never a hung test
        while not self.released.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


GATE = PostGate()


def _is_ack(body: bytes) -> bool:
    try:
        frame = json.loads(body)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("action") == "ack"


def message_ids(client: ChatClient) -> Counter[str]:
    return Counter(f["message_id"] for f in client.of("message"))


@pytest.fixture(scope="module")
def fanout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    original = Gateway._management

    async def gated(self: Gateway, request: Any) -> Any:
        if request.method == "POST":
            # read before holding (cached for the handler): a killed poster's is whole
            await GATE.wait(await request.read())
        return await original(self, request)

    config = kit.test_config(
        terraform_dirs=fanout_fast_dirs(tmp_path_factory.mktemp("fanout_timeout")),
        max_workers=4,
        function_settings={"FANOUT_SHARD_SIZE": str(SHARD_SIZE)},
        state_dir=tmp_path_factory.mktemp("state"),
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
    cause = start_failure(kit.test_config(terraform_dirs=(REPO / "terraform", FANOUT_FAST)))
    assert isinstance(cause, TerraformError)
    assert "visibility_timeout_seconds = 16, below local.functions.fanout.timeout = 60" in str(cause)


@dataclass
class Room:
    clients: list[ChatClient]
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def send(self, text: str, sender: int = 0) -> str:
        """``sendMessage`` from one client; the message id from its ack."""
        frame = {
            "action": "sendMessage",
            "room_id": ROOM,
            "message": text,
            "client_msg_id": f"c-{time.time_ns()}",
        }
        return str(self.run(self.clients[sender].request(frame, "ack", 30), 40)["message_id"])

    def copies(self, message_id: str) -> list[int]:
        """How many times each client got the message."""
        return [message_ids(c)[message_id] for c in self.clients]


@pytest.fixture(scope="module")
def room(fanout_stack: Stack) -> Iterator[Room]:
    """500 connected clients in ROOM, read by an event loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def open_all() -> list[ChatClient]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int) -> ChatClient:
            async with gate:
                return await ChatClient.join(fanout_stack.ws_url, f"fan{i % USERS}", ROOM, open_timeout=30)

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

    def redelivered() -> int:
        return sum(1 for n in fanout_stats(fanout_stack).receive_counts.values() if n > 1)

    redelivered_before = redelivered()
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
    deduped = [len(message_ids(c).keys() & {message_id}) for c in room.clients]
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
