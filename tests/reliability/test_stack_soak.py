"""Soak through the local stack: 50 clients x 50 messages sent concurrently (rooms of 5), then a steady
run with the gateway's and the workers' memory sampled.

``RELIABILITY_SOAK_SECONDS`` sets the steady run's length (default 120 s: the two minutes specified).
Clients send at 4 messages a second each, under the per-connection limit (10 a second, bursts of 20).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.reliability import summary
from tests.reliability.stack import Client, StackProcess

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


async def open_clients(stack: StackProcess, prefix: str, count: int) -> list[Client]:
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> Client:
        async with gate:
            return await Client.open(stack.url(f"{prefix}{i}", f"{prefix}-{i // ROOM_SIZE}"), f"{prefix}{i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def expected_for(clients: list[Client], sent: dict[int, list[str]]) -> dict[int, Counter[str]]:
    """Every client should get every message of its room exactly once (its own included)."""
    expected: dict[int, Counter[str]] = {}
    for i in range(len(clients)):
        room = i // ROOM_SIZE
        members = [j for j in range(len(clients)) if j // ROOM_SIZE == room]
        expected[i] = Counter(text for j in members for text in sent.get(j, []))
    return expected


async def drain(clients: list[Client], expected: dict[int, Counter[str]], deadline: float) -> None:
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


def losses(clients: list[Client], expected: dict[int, Counter[str]]) -> tuple[int, int, int]:
    """(lost, duplicated, foreign): foreign = frames from another room."""
    lost = duplicated = foreign = 0
    for i, client in enumerate(clients):
        for text, n in expected[i].items():
            got = client.received[text]
            lost += max(0, n - got)
            duplicated += max(0, got - n)
        foreign += sum(n for text, n in client.received.items() if text not in expected[i])
    return lost, duplicated, foreign


async def send_paced(client: Client, texts: list[str], interval: float) -> None:
    for text in texts:
        await client.send(text)
        await asyncio.sleep(interval)


@dataclass
class BurstResult:
    lost: int
    duplicated: int
    redelivered: int  # duplicates carrying one message_id: a post retried after it had been delivered
    foreign: int
    errors: Counter[str]
    workers: int

    @property
    def timeouts(self) -> int:
        """API Gateway's "Endpoint request timed out" frames: the invocation waited over 29 s for a worker
        (it still ran and broadcast, as Lambda does after API Gateway gives up)."""
        return self.errors["gateway: Endpoint request timed out"]


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurstResult]:
    """50 clients x 50 messages at once, on a stack of its own with the per-connection limit off: this run
    measures delivery (the limiter under contention is pinned by tests/reliability/test_rate_limit.py)."""
    stack = StackProcess(
        tmp_path_factory.mktemp("soak-stack") / "stack.log", extra_args=["--var", "rate_limit_per_second=0"]
    ).start()

    async def run() -> BurstResult:
        clients = await open_clients(stack, "soak", 50)
        sent = {i: [f"soak{i}:{k}" for k in range(50)] for i in range(50)}
        await asyncio.gather(*(send_paced(c, sent[i], 0.25) for i, c in enumerate(clients)))
        expected = expected_for(clients, sent)
        await drain(clients, expected, time.monotonic() + 300)
        lost, duplicated, foreign = losses(clients, expected)
        redelivered = sum(n - 1 for c in clients for n in c.message_ids.values() if n > 1)
        errors = sum((c.errors for c in clients), start=Counter[str]())
        workers = stack.memory()[2]
        await asyncio.gather(*(c.close() for c in clients))
        return BurstResult(lost, duplicated, redelivered, foreign, errors, workers)

    try:
        result = asyncio.run(run())
    finally:
        stack.stop()
    summary.record("soak", clients=50, messages=50, lost=result.lost, duplicated=result.duplicated)
    summary.note("soak", burst_workers=str(result.workers), burst_timeouts=str(result.timeouts))
    yield result


@pytest.mark.timeout(600)
def test_soak_50_clients_x_50_messages_none_lost(burst: BurstResult) -> None:
    assert (burst.lost, burst.foreign) == (0, 0)
    # No contract error (the clients stay valid) and no "Internal server error": only integration timeouts
    # of a 2-core machine under this load may show, and their messages were delivered all the same.
    assert set(burst.errors) <= {"gateway: Endpoint request timed out"}, burst.errors


@pytest.mark.timeout(600)
def test_soak_50_clients_x_50_messages_none_duplicated(burst: BurstResult) -> None:
    assert burst.duplicated == 0, f"{burst.duplicated} duplicated ({burst.redelivered} with one message_id)"


@pytest.mark.timeout(int(SOAK_SECONDS) + 420)
def test_soak_steady_rate_memory_growth_is_bounded(stack_process: StackProcess) -> None:
    samples: list[tuple[float, int, int, int]] = []

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), *stack_process.memory()))
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
