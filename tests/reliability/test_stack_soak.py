"""Soak through the local stack: 50 clients x 50 messages sent concurrently (rooms of 5), one client of
each room dropping its TCP connection (no close frame) half way and resuming, then a steady run with the
gateway's and the workers' memory sampled.

A client that drops reconnects, fetches ``getHistory`` ``after`` its last seen message until ``has_more``
is false, and sends again what was not acknowledged with the same ``client_msg_id``; what each client saw
live plus what it fetched, deduplicated by ``message_id``, must be every message of its room exactly once.

``RELIABILITY_SOAK_SECONDS`` sets the steady run's length (default 120 s: the two minutes specified).
Clients send at 4 messages a second each, under the per-user limit (10 a second, bursts of 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import ClientConnection, connect

from local_stack.testing import StackProcess
from local_stack.testing.ws import ChatClient
from tests.reliability import summary
from tests.reliability.helpers import memory

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
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> ChatClient:
        async with gate:
            return await ChatClient.open(
                stack.url(f"{prefix}{i}", f"{prefix}-{i // ROOM_SIZE}"), f"{prefix}{i}"
            )

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def expected_for(clients: list[ChatClient], sent: dict[int, list[str]]) -> dict[int, Counter[str]]:
    """Every client should get every message of its room exactly once (its own included)."""
    expected: dict[int, Counter[str]] = {}
    for i in range(len(clients)):
        room = i // ROOM_SIZE
        members = [j for j in range(len(clients)) if j // ROOM_SIZE == room]
        expected[i] = Counter(text for j in members for text in sent.get(j, []))
    return expected


async def drain(clients: list[ChatClient], expected: dict[int, Counter[str]], deadline: float) -> None:
    total = sum(sum(e.values()) for e in expected.values())
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = sum(min(c.received[t], n) for i, c in enumerate(clients) for t, n in expected[i].items())
        if got >= total:
            return
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > DRAIN_STALL_SECONDS:
            return
        await asyncio.sleep(0.25)


def losses(clients: list[ChatClient], expected: dict[int, Counter[str]]) -> tuple[int, int, int]:
    """(lost, duplicated, foreign): foreign = frames from another room."""
    lost = duplicated = foreign = 0
    for i, client in enumerate(clients):
        for text, n in expected[i].items():
            got = client.received[text]
            lost += max(0, n - got)
            duplicated += max(0, got - n)
        foreign += sum(n for text, n in client.received.items() if text not in expected[i])
    return lost, duplicated, foreign


async def send_paced(client: ChatClient, texts: list[str], interval: float) -> None:
    for text in texts:
        await client.send(text)
        await asyncio.sleep(interval)


@dataclass
class ResumingClient:
    """A chat client that survives a dropped connection: acked sends, resume by history, dedupe by id."""

    url: str
    ws: ClientConnection | None = None
    by_id: dict[str, str] = field(default_factory=dict)  # message_id -> text: live and fetched, deduped
    raw: Counter[str] = field(default_factory=Counter)  # text -> frames received live (before dedupe)
    acked: set[str] = field(default_factory=set)
    unacked: dict[str, str] = field(default_factory=dict)  # client_msg_id -> text
    errors: Counter[str] = field(default_factory=Counter)
    histories: asyncio.Queue[dict[str, object]] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None
    drops: int = 0
    fetched: int = 0

    async def open(self) -> None:
        self.ws = await connect(
            self.url, open_timeout=60, close_timeout=5, max_queue=None, ping_interval=None
        )
        self.reader = asyncio.get_running_loop().create_task(self._read(self.ws))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for data in ws:
                frame = json.loads(data)
                action = frame.get("action")
                if action == "message":
                    self.raw[frame["message"]] += 1
                    self.by_id[frame["message_id"]] = frame["message"]
                elif action == "ack":
                    self.acked.add(frame["client_msg_id"])
                    self.unacked.pop(frame["client_msg_id"], None)
                elif action == "history":
                    await self.histories.put(frame)
                elif action in ("presence", "joined", "left", "typing"):
                    continue  # room traffic the soak does not count
                elif action == "error":
                    self.errors[str(frame.get("code"))] += 1
                    await self.histories.put(frame)  # it may answer the history request: ask again
                else:
                    self.errors[f"gateway: {frame.get('message')}"] += 1
                    await self.histories.put(frame)  # e.g. "Endpoint request timed out": ask again

    async def send(self, text: str, client_msg_id: str) -> None:
        self.unacked[client_msg_id] = text
        assert self.ws is not None
        with contextlib.suppress(Exception):  # a send on a dropped socket: resent after the resume
            await self.ws.send(
                json.dumps({"action": "sendMessage", "message": text, "client_msg_id": client_msg_id})
            )

    def drop(self) -> None:
        """Vanish without a close frame (a phone changing networks)."""
        assert self.ws is not None
        self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()
        self.drops += 1

    async def resume(self) -> None:
        await self.open()
        after = max(self.by_id) if self.by_id else "0" * 26
        for _ in range(1000):
            assert self.ws is not None
            await self.ws.send(json.dumps({"action": "getHistory", "after": after, "limit": 100}))
            try:
                # Past the 29 s integration timeout: every request is answered by then, if only by
                # API Gateway's "Endpoint request timed out".
                page = await asyncio.wait_for(self.histories.get(), 40)
            except TimeoutError:
                self.errors["history request unanswered (asked again)"] += 1
                continue
            if page.get("action") != "history":
                continue  # an error or gateway frame: a client asks again
            messages = page["messages"]
            assert isinstance(messages, list)
            for message in messages:
                self.by_id[message["message_id"]] = message["message"]
            self.fetched += len(messages)
            if not page["has_more"] or not messages:
                break
            after = messages[-1]["message_id"]
        for client_msg_id, text in list(self.unacked.items()):
            await self.send(text, client_msg_id)

    def seen(self) -> Counter[str]:
        """Texts after dedupe by message_id: a text seen under two ids was stored twice."""
        return Counter(self.by_id.values())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


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
    redelivered: int  # duplicates carrying one message_id: a post retried after it had been delivered
    foreign: int
    errors: Counter[str]
    workers: int
    dropped: int = 0
    fetched: int = 0
    raw_duplicates: int = 0  # frames received twice live, before dedupe (a re-broadcast, a retried post)

    @property
    def timeouts(self) -> int:
        """API Gateway's "Endpoint request timed out" frames: the invocation waited over 29 s for a worker
        (it still ran and broadcast, as Lambda does after API Gateway gives up)."""
        return self.errors["gateway: Endpoint request timed out"]


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurstResult]:
    """50 clients x 50 messages at once, on a stack of its own with the per-user limit off: this run
    measures delivery (the limiter under contention is pinned by tests/reliability/test_rate_limit.py)."""
    stack = StackProcess(
        log_path=tmp_path_factory.mktemp("soak-stack") / "stack.log",
        args=["--var", "rate_limit_per_second=0"],
    ).start()

    async def run() -> BurstResult:
        gate = asyncio.Semaphore(10)
        clients = [ResumingClient(stack.url(f"soak{i}", f"soak-{i // ROOM_SIZE}")) for i in range(50)]

        async def opened(client: ResumingClient) -> None:
            async with gate:
                await client.open()

        await asyncio.gather(*(opened(c) for c in clients))
        sent = {i: [f"soak{i}:{k}" for k in range(50)] for i in range(50)}
        droppers = {i for i in range(50) if i % ROOM_SIZE == ROOM_SIZE - 1}  # one client of each room
        await asyncio.gather(
            *(
                send_with_a_drop(c, sent[i], 0.25, drop_after=25 if i in droppers else None)
                for i, c in enumerate(clients)
            )
        )
        expected = expected_by_room(sent)
        await drain_seen(clients, expected, time.monotonic() + 300)
        # A message still unacknowledged (its ack lost with the dropped socket) is sent again, then all
        # clients fetch what they may have missed while it went out.
        for client in clients:
            for client_msg_id, text in list(client.unacked.items()):
                await client.send(text, client_msg_id)
        await drain_seen(clients, expected, time.monotonic() + 60)
        lost = duplicated = foreign = 0
        for i, client in enumerate(clients):
            seen, wanted = client.seen(), expected[i // ROOM_SIZE]
            lost += sum(1 for text in wanted if text not in seen)
            duplicated += sum(n - 1 for n in seen.values() if n > 1)
            foreign += sum(1 for text in seen if text not in wanted)
        raw_duplicates = sum(n - 1 for c in clients for n in c.raw.values() if n > 1)
        errors = sum((c.errors for c in clients), start=Counter[str]())
        workers = memory(stack.pid)[2]
        result = BurstResult(
            lost,
            duplicated,
            raw_duplicates,
            foreign,
            errors,
            workers,
            dropped=sum(c.drops for c in clients),
            fetched=sum(c.fetched for c in clients),
            raw_duplicates=raw_duplicates,
        )
        await asyncio.gather(*(c.close() for c in clients))
        return result

    try:
        result = asyncio.run(run())
    finally:
        stack.stop()
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
    assert burst.duplicated == 0, f"{burst.duplicated} duplicated ({burst.redelivered} live repeats)"
    assert burst.dropped == 10 and burst.fetched > 0


def expected_by_room(sent: dict[int, list[str]]) -> dict[int, set[str]]:
    rooms: dict[int, set[str]] = {}
    for i, texts in sent.items():
        rooms.setdefault(i // ROOM_SIZE, set()).update(texts)
    return rooms


async def drain_seen(clients: list[ResumingClient], expected: dict[int, set[str]], deadline: float) -> None:
    total = sum(len(expected[i // ROOM_SIZE]) for i in range(len(clients)))
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        seen = [set(c.by_id.values()) for c in clients]
        got = sum(len(seen[i] & expected[i // ROOM_SIZE]) for i in range(len(clients)))
        if got >= total:
            return
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > DRAIN_STALL_SECONDS / 4:
            return
        await asyncio.sleep(0.25)


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
        expected = expected_for(clients, sent)
        await drain(clients, expected, time.monotonic() + 300)
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
