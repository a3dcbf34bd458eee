"""WebSocket clients for the end-to-end benchmarks: open K, send from S at once, record every delivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


@dataclass
class Deliveries:
    sent_at: dict[str, float] = field(default_factory=dict)
    first: dict[tuple[int, str], float] = field(default_factory=dict)  # (client, key) -> receive time
    per_key: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    unexpected: int = 0
    unexpected_samples: list[str] = field(default_factory=list)
    last_frame_at: float = 0.0

    def record(self, client: int, raw: str | bytes) -> None:
        now = self.last_frame_at = time.perf_counter()
        try:
            frame = json.loads(raw)
            key = frame["message"] if frame.get("action") == "message" else None
        except (ValueError, TypeError, KeyError):
            key = None
        if key is None or key not in self.sent_at:
            self.unexpected += 1
            if len(self.unexpected_samples) < 3:
                self.unexpected_samples.append(str(raw)[:200])
            return
        if (client, key) in self.first:
            self.duplicates += 1
            return
        self.first[(client, key)] = now
        self.per_key[key] += 1


async def open_clients(
    urls: list[str], *, concurrency: int, timeout_s: float
) -> tuple[list[ClientConnection], list[float], int]:
    """(connections, handshake seconds each, refused count), opening ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    results: list[tuple[ClientConnection | None, float]] = [(None, 0.0)] * len(urls)

    async def one(i: int, url: str) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                conn = await connect(url, open_timeout=timeout_s, ping_interval=None, max_queue=None)
            except Exception:
                results[i] = (None, time.perf_counter() - start)
                return
            results[i] = (conn, time.perf_counter() - start)

    await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
    conns = [c for c, _ in results if c is not None]
    return conns, [t for c, t in results if c is not None], sum(1 for c, _ in results if c is None)


async def close_clients(conns: list[ClientConnection]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def _reader(conn: ClientConnection, index: int, deliveries: Deliveries) -> asyncio.Task[None]:
    async def read() -> None:
        try:
            async for raw in conn:
                deliveries.record(index, raw)
        except Exception:
            pass

    return asyncio.get_running_loop().create_task(read())


async def broadcast_rounds(
    conns: list[ClientConnection],
    *,
    messages: int,
    senders: int,
    timeout_s: float,
    frame: Callable[[str], dict[str, Any]],
    tag: str,
    settle_s: float = 0.3,
) -> tuple[Deliveries, float]:
    """Send ``messages`` in rounds of ``senders`` frames sent at once; each round waits for every copy
    (or the deadline). Returns the deliveries and the seconds from the first send to the last receipt."""
    deliveries = Deliveries()
    readers = [_reader(c, i, deliveries) for i, c in enumerate(conns)]
    k = len(conns)
    senders = max(1, min(senders, k))
    deadline = time.monotonic() + timeout_s
    sent = 0
    try:
        # frames the connections caused (presence: every join tells the room) must be delivered before
        # the first send, or the broadcast measured would queue behind them
        deliveries.last_frame_at = time.perf_counter()
        while time.monotonic() < deadline and time.perf_counter() - deliveries.last_frame_at < settle_s:
            await asyncio.sleep(0.02)
        start = time.perf_counter()
        while sent < messages and time.monotonic() < deadline:
            batch = []
            for s in range(min(senders, messages - sent)):
                key = f"{tag}:{s}:{sent}"
                deliveries.sent_at[key] = time.perf_counter()
                batch.append(conns[s].send(json.dumps(frame(key))))
                sent += 1
            await asyncio.gather(*batch)
            round_keys = list(deliveries.sent_at)[-len(batch) :]
            while time.monotonic() < deadline and any(deliveries.per_key[key] < k for key in round_keys):
                await asyncio.sleep(0.002)
        await asyncio.sleep(0.2)  # late duplicates still count
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    last = max(deliveries.first.values(), default=start)
    return deliveries, last - start
