"""Soak through the local stack: 50 clients x 50 messages at once (rooms of 5), one client of each room
dropping its TCP connection (no close frame) half way and resuming, then a steady run with the gateway's
and the workers' memory sampled (``RELIABILITY_SOAK_SECONDS``, default 120 s).

A client that drops reconnects, fetches ``getHistory`` ``after`` its last seen message until ``has_more``
is false, and sends again what was not acknowledged with the same ``client_msg_id``; what each client saw
live plus what it fetched, deduplicated by ``message_id``, must be every message of its room exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from local_stack.testing import StackProcess
from local_stack.testing.ws import ChatClient, until
from tests.reliability import summary
from tests.reliability.helpers import delivered, expected_for, gathered, losses, memory, settle

ROOM_SIZE = 5
SOAK_SECONDS = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "120"))
DRAIN_STALL_SECONDS = 60.0  # no new frame for this long while some are missing: count them lost
MB = 1024 * 1024
# Memory bounds for the steady run (20 messages a second), slopes over its last half. Measured on the
# 2-core dev box, 120 s run: gateway 114->151 MB, +17.5 MB/min over the last half; workers +0.06 MB/min
# each. The gateway's growth is NOT its log ring (20,000 lines, local_stack/stack.py; the run logs ~12,000
# lines of ~230 B, ~3 MB): it also hosts moto's DynamoDB and is still growing at the end of the run, an
# open finding. These bounds catch a regression from there (slope under twice the measured), not a plateau.
GATEWAY_SLOPE_MB_PER_MIN = 35.0
GATEWAY_RSS_CAP_MB = 100 + 2 * 35 * SOAK_SECONDS / 60  # a ~100 MB start plus twice the measured rate
WORKER_SLOPE_MB_PER_MIN = 2.0


async def open_clients(stack: StackProcess, prefix: str, count: int) -> list[ChatClient]:
    urls = [(stack.url(f"{prefix}{i}", f"{prefix}-{i // ROOM_SIZE}"), f"{prefix}{i}") for i in range(count)]
    return await gathered((ChatClient.open(url, name) for url, name in urls), at_once=10)


async def send_paced(client: ChatClient, texts: list[str], interval: float) -> None:
    for text in texts:
        await client.send(text)
        await asyncio.sleep(interval)


# What a soak client may receive besides errors (counted by ChatClient): its room's messages, its acks,
# history pages, and room traffic it does not count.
EXPECTED_ACTIONS = {"message", "ack", "history", "error", "presence", "joined", "left", "typing"}


def answers(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("action") in ("history", "error") or "action" not in f]


@dataclass
class ResumingClient:
    """A chat client that survives a dropped connection: acked sends, resume by history, dedupe by id."""

    url: str
    connections: list[ChatClient] = field(default_factory=list)  # one per (re)connect, the last one live
    sent: dict[str, str] = field(default_factory=dict)  # client_msg_id -> text
    history: dict[str, str] = field(default_factory=dict)  # message_id -> text, fetched by getHistory
    errors: Counter[str] = field(default_factory=Counter)
    drops: int = 0
    fetched: int = 0

    async def open(self) -> None:
        self.connections.append(await ChatClient.open(self.url, ignore_presence=True))

    def of(self, action: str) -> list[dict[str, Any]]:
        return [f for client in self.connections for f in client.of(action)]

    @property
    def by_id(self) -> dict[str, str]:
        """message_id -> text of every message received live or fetched."""
        return {**self.history, **{f["message_id"]: f["message"] for f in self.of("message")}}

    @property
    def unacked(self) -> dict[str, str]:
        acked = {f["client_msg_id"] for f in self.of("ack")}
        return {cid: text for cid, text in self.sent.items() if cid not in acked}

    def all_errors(self) -> Counter[str]:
        """Error codes and gateway frames of every connection, and any frame of an action a client in this
        soak never gets (room traffic it does not count is not one)."""
        unexpected = Counter(
            f"unexpected action: {f['action']}"
            for client in self.connections
            for f in client.frames
            if "action" in f and f["action"] not in EXPECTED_ACTIONS
        )
        return sum((c.errors for c in self.connections), start=self.errors + unexpected)

    async def send(self, text: str, client_msg_id: str) -> None:
        self.sent[client_msg_id] = text
        with contextlib.suppress(Exception):  # a send on a dropped socket: resent after the resume
            await self.connections[-1].send(
                {"action": "sendMessage", "message": text, "client_msg_id": client_msg_id}
            )

    def drop(self) -> None:
        """Vanish without a close frame (a phone changing networks)."""
        self.connections[-1].abort()
        self.drops += 1

    async def resume(self) -> None:
        await self.open()
        client, after = self.connections[-1], max(self.by_id, default="0" * 26)
        for _ in range(1000):
            asked = len(client.frames)
            await client.send({"action": "getHistory", "after": after, "limit": 100})
            # Past the 29 s integration timeout every request is answered, if only by API Gateway's
            # "Endpoint request timed out": an error or gateway frame, and the client asks again.
            if not await until(lambda start=asked: answers(client.frames[start:]), 40):
                self.errors["history request unanswered (asked again)"] += 1
                continue
            pages = [f for f in client.frames[asked:] if f.get("action") == "history"]
            if not pages:
                continue
            messages = pages[0]["messages"]
            self.history.update((m["message_id"], m["message"]) for m in messages)
            self.fetched += len(messages)
            if not pages[0]["has_more"] or not messages:
                break
            after = messages[-1]["message_id"]
        for client_msg_id, text in self.unacked.items():
            await self.send(text, client_msg_id)

    def seen(self) -> Counter[str]:
        """Texts after dedupe by message_id: a text seen under two ids was stored twice."""
        return Counter(self.by_id.values())

    async def close(self) -> None:
        await self.connections[-1].close()


async def send_with_a_drop(
    client: ResumingClient, texts: list[str], interval: float, *, drop_after: int | None
) -> None:
    for k, text in enumerate(texts):
        if k == drop_after:
            client.drop()
            await asyncio.sleep(1.5)
            await client.resume()
        await client.send(text, f"c{k}")
        await asyncio.sleep(interval)


@dataclass
class BurstResult:
    lost: int
    duplicated: int
    foreign: int
    errors: Counter[str]
    workers: int
    dropped: int
    fetched: int
    raw_duplicates: int  # frames received twice live, before dedupe (a re-broadcast, a retried post)

    @property
    def timeouts(self) -> int:
        """API Gateway's "Endpoint request timed out" frames: the invocation waited over 29 s for a worker
        (it still ran and broadcast, as Lambda does after API Gateway gives up)."""
        return self.errors["gateway: Endpoint request timed out"]


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurstResult]:
    """50 clients x 50 messages at once, on a stack of its own with the per-user limit off: this run
    measures delivery (the limiter under contention is pinned by tests/reliability/test_rate_limit.py)."""

    async def run(stack: StackProcess) -> BurstResult:
        clients = [ResumingClient(stack.url(f"soak{i}", f"soak-{i // ROOM_SIZE}")) for i in range(50)]
        await gathered((c.open() for c in clients), at_once=10)
        sent = {i: [f"soak{i}:{k}" for k in range(50)] for i in range(50)}
        droppers = {i for i in range(50) if i % ROOM_SIZE == ROOM_SIZE - 1}  # one client of each room
        await asyncio.gather(
            *(
                send_with_a_drop(c, sent[i], 0.25, drop_after=25 if i in droppers else None)
                for i, c in enumerate(clients)
            )
        )
        expected = expected_for(sent, ROOM_SIZE)
        total = sum(len(wanted) for wanted in expected.values())

        def seen() -> int:
            return sum(len(set(c.by_id.values()) & set(expected[i])) for i, c in enumerate(clients))

        await settle(seen, total, time.monotonic() + 300, DRAIN_STALL_SECONDS / 4)
        # A message still unacknowledged (its ack lost with the dropped socket) is sent again, then all
        # clients fetch what they may have missed while it went out.
        for client in clients:
            for client_msg_id, text in client.unacked.items():
                await client.send(text, client_msg_id)
        await settle(seen, total, time.monotonic() + 60, DRAIN_STALL_SECONDS / 4)
        lost = duplicated = foreign = 0
        for i, client in enumerate(clients):
            texts, wanted = client.seen(), expected[i]
            lost += sum(1 for text in wanted if text not in texts)
            duplicated += sum(n - 1 for n in texts.values() if n > 1)
            foreign += sum(1 for text in texts if text not in wanted)
        live = [sum((conn.received for conn in c.connections), start=Counter[str]()) for c in clients]
        raw_duplicates = sum(n - 1 for received in live for n in received.values() if n > 1)
        result = BurstResult(
            lost,
            duplicated,
            foreign,
            errors=sum((c.all_errors() for c in clients), start=Counter[str]()),
            workers=memory(stack.pid)[2],
            dropped=sum(c.drops for c in clients),
            fetched=sum(c.fetched for c in clients),
            raw_duplicates=raw_duplicates,
        )
        await asyncio.gather(*(c.close() for c in clients))
        return result

    log_path = tmp_path_factory.mktemp("soak-stack") / "stack.log"
    with StackProcess(log_path=log_path, args=["--var", "rate_limit_per_second=0"]) as stack:
        result = asyncio.run(run(stack))
    summary.record("soak", clients=50, messages=50, lost=result.lost, duplicated=result.duplicated)
    summary.note(
        "soak",
        burst_workers=str(result.workers),
        burst_timeouts=str(result.timeouts),
        resumes=f"{result.dropped} dropped and resumed, {result.fetched} messages fetched by history, "
        f"{result.raw_duplicates} live repeats dropped by message_id",
    )
    yield result


@pytest.mark.timeout(600)
def test_soak_50_clients_x_50_messages_none_lost(burst: BurstResult) -> None:
    assert (burst.lost, burst.foreign) == (0, 0)
    # No contract error (the clients stay valid) and no "Internal server error": only integration timeouts
    # of a 2-core machine under this load may show, and their messages were delivered all the same.
    assert set(burst.errors) <= {"gateway: Endpoint request timed out"}, burst.errors


@pytest.mark.timeout(600)
def test_soak_50_clients_x_50_messages_none_duplicated(burst: BurstResult) -> None:
    # After dedupe by message_id: no message was stored twice, whatever was re-sent after a drop.
    assert burst.duplicated == 0, f"{burst.duplicated} duplicated ({burst.raw_duplicates} live repeats)"
    assert burst.dropped == 10 and burst.fetched > 0


@pytest.mark.timeout(int(SOAK_SECONDS) + 420)
def test_soak_steady_rate_memory_growth_is_bounded(stack_process: StackProcess) -> None:
    samples: list[tuple[float, int, int, int]] = []

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), *memory(stack_process.pid)))
            await asyncio.sleep(2.0)

    async def run() -> tuple[int, int, int]:
        clients = await open_clients(stack_process, "steady", 20)
        per_client = max(1, int(SOAK_SECONDS))  # one message a second each: 20 a second in all
        sent = {i: [f"steady{i}:{k}" for k in range(per_client)] for i in range(20)}
        stop = asyncio.Event()
        sampler = asyncio.get_running_loop().create_task(sample(stop))
        await asyncio.gather(*(send_paced(c, sent[i], 1.0) for i, c in enumerate(clients)))
        expected = expected_for(sent, ROOM_SIZE)
        total = sum(sum(wanted.values()) for wanted in expected.values())
        await settle(lambda: delivered(clients, expected), total, time.monotonic() + 300, DRAIN_STALL_SECONDS)
        stop.set()
        await sampler
        lost, duplicated, _ = losses(clients, expected)
        await asyncio.gather(*(c.close() for c in clients))
        return lost, duplicated, 20 * per_client

    lost, duplicated, messages = asyncio.run(run())
    assert len(samples) >= 4, f"only {len(samples)} memory samples"
    # Growth rate over the last half (once warm: pools grown, caches filled), least squares over the
    # samples; workers per worker, since the pool may scale. A leak shows as a steady slope; a plateau ~0.
    tail = samples[len(samples) // 2 :]
    minutes = [(t - tail[0][0]) / 60 for t, *_ in tail]
    gateway_slope = slope(minutes, [g / MB for _, g, _, _ in tail])
    worker_slope = slope(minutes, [w / max(1, n) / MB for _, _, w, n in tail])
    first, end = samples[0], samples[-1]
    summary.note(
        "soak",
        steady=(
            f"steady {SOAK_SECONDS:.0f} s, {messages} messages, {lost} lost, {duplicated} duplicated: "
            f"gateway RSS {first[1] / MB:.0f}->{end[1] / MB:.0f} MB (cap {GATEWAY_RSS_CAP_MB:.0f}), "
            f"last half {gateway_slope:+.2f} MB/min (bound {GATEWAY_SLOPE_MB_PER_MIN}); "
            f"{end[3]} workers {first[2] / MB:.0f}->{end[2] / MB:.0f} MB, "
            f"last half {worker_slope:+.2f} MB/min each (bound {WORKER_SLOPE_MB_PER_MIN}); "
            f"{len(samples)} samples"
        ),
    )
    assert lost == 0 and duplicated == 0
    assert gateway_slope < GATEWAY_SLOPE_MB_PER_MIN
    assert worker_slope < WORKER_SLOPE_MB_PER_MIN
    assert end[1] <= GATEWAY_RSS_CAP_MB * MB


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
