"""Head-of-line through the local stack (its own process): one client flooding its socket must not stall
everyone else, grow the gateway's memory for good, or keep half-sent handshakes open.

1. Another room's echo is timed idle, then while one client sends bursts of 1,500 frames: its p99 must stay
   within 3x the idle p99.
2. 3,000 frames of 30 KB (under the frame limit, over the message limit): the gateway's RSS is sampled.
3. 1,000 half-sent handshakes, opened at the start, must all be closed by the handshake timeout (10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from local_stack.testing import StackProcess
from local_stack.testing.raw_ws import handshake_request
from local_stack.testing.ws import ChatClient
from tests.reliability import summary
from tests.reliability.helpers import memory

MB = 1024 * 1024
VICTIMS = 3  # users of the quiet room, each timing its own echoes: more samples for the p99
ECHOES = 12  # per victim and window
CYCLES = 4  # idle window, then flooded window
BURST_INTERVAL_S = 0.5
# The bound is 3x the idle p99. A 2-core machine shared with other jobs stalls every process now and then
# for a few hundred milliseconds (measured: stalls of 0.1-0.7 s hitting all victims at once, idle or not;
# 0.8 s at a load average of 10); the defect this guards against delays another room by 15-29 s (1,500
# queued invocations), so this slack keeps the test from failing on a stall without hiding that. The
# summary line prints the measured ratio against the 3x target.
STALL_SLACK_MS = 1000.0
ECHO_INTERVAL_S = 0.15
BURST = 1500
BIG_FRAMES = 3000
HALF_OPEN = 1000
HANDSHAKE_TIMEOUT_S = 10.0  # the gateway's default
P99_FACTOR = 3.0
RSS_AFTER_MB = 40  # the gateway's RSS once the big frames are handled, over what it was before


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def echo_times(
    client: ChatClient, label: str, count: int, into: list[float] | None = None
) -> list[float]:
    """Seconds from sending a message to receiving its broadcast, one message at a time, paced under the
    per-user rate limit (10 a second)."""
    times = into if into is not None else []
    for i in range(count):
        text = f"{label}-{i}"
        started = time.monotonic()
        await client.send(text)
        while not client.received[text]:
            if time.monotonic() - started > 60 or client.errors:
                times.append(time.monotonic() - started)  # a failed echo counts as at least this slow
                raise AssertionError(f"{text} never came back: {dict(client.errors)}")
            await asyncio.sleep(0.001)
        times.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, started + ECHO_INTERVAL_S - time.monotonic()))
    return times


async def flood(client: ChatClient, frames: list[str]) -> float:
    """Send every frame as fast as the socket takes them; seconds it took."""
    started = time.monotonic()
    for frame in frames:
        await client.ws.send(frame)
    return time.monotonic() - started


async def flood_settled(flooder: ChatClient, quiet_s: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until the flooder's answers stop coming: its admitted frames are all handled."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        seen = sum(flooder.received.values()) + sum(flooder.errors.values())
        if seen != last:
            last, since = seen, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        await asyncio.sleep(0.05)


def still_open(sockets: list[socket.socket]) -> int:
    open_count = 0
    for sock in sockets:
        sock.settimeout(0.01)
        try:
            open_count += sock.recv(1) != b""
        except TimeoutError:
            open_count += 1
        except OSError:
            pass
    return open_count


@pytest.fixture
def half_open(stack_process: StackProcess) -> Iterator[tuple[list[socket.socket], float]]:
    parts, partial = urlsplit(stack_process.ws_url), handshake_request(stack_process.ws_url)[:40]
    sockets = []
    for _ in range(HALF_OPEN):
        sockets.append(sock := socket.create_connection((parts.hostname, parts.port), timeout=5))
        sock.sendall(partial)
    yield sockets, time.monotonic()
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


@pytest.mark.timeout(300)
def test_head_of_line_one_flooding_client_does_not_stall_the_others(
    stack_process: StackProcess, half_open: tuple[list[socket.socket], float]
) -> None:
    sockets, opened_at = half_open
    figures: dict[str, float] = {}
    samples: dict[str, list[float]] = {"idle": [], "loaded": []}

    async def run() -> None:
        victims = [
            await ChatClient.open(stack_process.url(f"hol-victim{i}", "hol-quiet"), f"hol-victim{i}")
            for i in range(VICTIMS)
        ]
        victim = victims[0]
        flooder = await ChatClient.open(stack_process.url("hol-flooder", "hol-flood"), "hol-flooder")
        try:
            # warm: every victim's invocation and the flood's must find a ready execution environment
            for round_ in range(3):
                await asyncio.gather(*(echo_times(c, f"warm{round_}", 2) for c in [*victims, flooder]))

            async def phase(label: str, into: list[float]) -> None:
                await asyncio.gather(*(echo_times(c, label, ECHOES, into) for c in victims))

            frames = [json.dumps({"action": "sendMessage", "message": f"flood {i}"}) for i in range(BURST)]
            idle, loaded = samples["idle"], samples["loaded"]
            # Idle and flooded windows alternate, so the shared machine's own stalls fall on both alike.
            for cycle in range(CYCLES):
                await flood_settled(flooder)
                await phase(f"idle{cycle}", idle)
                window = asyncio.get_running_loop().create_task(phase(f"loaded{cycle}", loaded))
                while not window.done():
                    await flood(flooder, frames)
                    figures["bursts"] = figures.get("bursts", 0) + 1
                    await asyncio.sleep(BURST_INTERVAL_S)
                await window

            # memory: 3,000 frames of 30 KB from one client
            big = json.dumps({"action": "sendMessage", "message": "x" * (30 * 1024)})
            before = memory(stack_process.pid)[0]
            peak = before
            sender = asyncio.get_running_loop().create_task(flood(flooder, [big] * BIG_FRAMES))
            while not sender.done():
                peak = max(peak, memory(stack_process.pid)[0])
                await asyncio.sleep(0.05)
            await sender
            settle_until = time.monotonic() + 20
            after = memory(stack_process.pid)[0]
            while time.monotonic() < settle_until:  # its waiting frames are handled, then released
                await asyncio.sleep(1.0)
                peak = max(peak, after)
                after = memory(stack_process.pid)[0]
                if after - before < RSS_AFTER_MB * MB:
                    break
            figures.update(rss_before_mb=before / MB, rss_peak_mb=peak / MB, rss_after_mb=after / MB)
            assert await echo_times(victim, "after", 1)  # the victim still works
        finally:
            for c in [*victims, flooder]:
                await c.close()

        # the half-sent handshakes: closed once the handshake timeout has passed
        await asyncio.sleep(max(0.0, opened_at + HANDSHAKE_TIMEOUT_S + 2 - time.monotonic()))
        figures["half_open_left"] = await asyncio.to_thread(still_open, sockets)

    try:
        asyncio.run(run())
    finally:
        for phase_name, values in samples.items():
            if values:
                figures[f"{phase_name}_p99_ms"] = p99(values) * 1000
                figures[f"{phase_name}_median_ms"] = sorted(values)[len(values) // 2] * 1000
        record(figures)
    assert figures["loaded_p99_ms"] <= P99_FACTOR * figures["idle_p99_ms"] + STALL_SLACK_MS, figures
    assert figures["rss_after_mb"] - figures["rss_before_mb"] < RSS_AFTER_MB, figures
    assert figures["half_open_left"] == 0, figures


def record(figures: dict[str, float]) -> None:
    summary.record(
        "head-of-line",
        bursts=int(figures.get("bursts", 0)),
        burst=BURST,
        big_frames=BIG_FRAMES,
        half_open=HALF_OPEN,
    )
    nan = float("nan")
    idle, loaded = figures.get("idle_p99_ms", nan), figures.get("loaded_p99_ms", nan)
    medians = f"{figures.get('idle_median_ms', nan):.0f}/{figures.get('loaded_median_ms', nan):.0f} ms"
    rss = [figures.get(f"rss_{k}_mb", nan) for k in ("before", "peak", "after")]
    summary.note(
        "head-of-line",
        idle_p99=f"{idle:.0f} ms",
        loaded_p99=f"{loaded:.0f} ms",
        ratio=f"{loaded / idle:.1f}x" if idle > 0 else "n/a",
        medians=medians,
        rss=f"{rss[0]:.0f} -> peak {rss[1]:.0f} -> {rss[2]:.0f} MB",
        half_open_left=str(int(figures["half_open_left"])) if "half_open_left" in figures else "n/a",
    )
