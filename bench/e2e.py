"""Section 2: end to end through the local stack, beside a bare websockets server (the floor).

For each K: K clients join one room; M messages are sent in rounds of S at once (S clients sending
simultaneously, each round waiting for every copy). Reported for the stack and the floor, same run, same
clients: delivery latency p50/p95/p99 (send to receipt, per recipient), broadcast completion (send to the
last recipient, median per message), copies delivered per second, lost and duplicated copies.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.clients import Deliveries, broadcast_rounds, close_clients, open_clients
from bench.report import median, percentile, table


@dataclass(frozen=True, kw_only=True)
class E2EConfig:
    clients: tuple[int, ...] = (10, 100, 200, 500)
    messages: int = 12
    senders: int = 4
    workers: int = 4
    timeout_s: float = 60.0
    connect_concurrency: int = 16
    profile_dir: Path | None = None
    profile_clients: int = 200  # K whose stack run is profiled (py-spy) when profile_dir is set
    dynamodb: str = "embedded"  # or "process": moto in its own process through DYNAMODB_ENDPOINT


def summarise(deliveries: Deliveries, span_s: float, k: int) -> dict[str, Any]:
    latencies = [(t - deliveries.sent_at[key]) * 1000 for (_client, key), t in deliveries.first.items()]
    completion = []
    for key, sent in deliveries.sent_at.items():
        times = [t for (_c, kk), t in deliveries.first.items() if kk == key]
        if times:
            completion.append((max(times) - sent) * 1000)
    expected = len(deliveries.sent_at) * k
    return {
        "messages": len(deliveries.sent_at),
        "expected": expected,
        "delivered": len(deliveries.first),
        "lost": expected - len(deliveries.first),
        "duplicated": deliveries.duplicates,
        "unexpected_frames": deliveries.unexpected,
        "unexpected_samples": deliveries.unexpected_samples,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "completion_ms": median(completion),
        "delivered_per_s": len(deliveries.first) / span_s if span_s > 0 else 0.0,
        "span_s": span_s,
    }


async def _measure(urls: list[str], config: E2EConfig, tag: str) -> dict[str, Any]:
    started = time.perf_counter()
    conns, handshakes, refused = await open_clients(
        urls, concurrency=config.connect_concurrency, timeout_s=config.timeout_s
    )
    connect_s = time.perf_counter() - started
    try:
        if refused:
            raise RuntimeError(f"{refused} of {len(urls)} connections were refused")
        deliveries, span = await broadcast_rounds(
            conns,
            messages=config.messages,
            senders=config.senders,
            timeout_s=config.timeout_s,
            frame=lambda key: {"action": "sendMessage", "message": key},
            tag=tag,
        )
    finally:
        await close_clients(conns)
    return {
        **summarise(deliveries, span, len(urls)),
        "connect_s": connect_s,
        "handshake_p50_ms": median(handshakes) * 1000,
    }


def _wait_for_disconnects(dynamodb: str, timeout_s: float) -> int:
    """$disconnect runs after each close: wait (bounded) until the table is empty; returns what is left."""
    from bench.env import REGION, TABLE
    from local_stack.dynamodb import dynamodb_client

    client = dynamodb_client(dynamodb, REGION)
    deadline = time.monotonic() + timeout_s
    left = -1
    while time.monotonic() < deadline:
        left = client.scan(TableName=TABLE, Select="COUNT")["Count"]
        if left == 0:
            break
        time.sleep(0.2)
    return left


def run(config: E2EConfig) -> dict[str, Any]:
    from bench.floor_server import FloorProcess
    from bench.stack_proc import local_stack
    from local_stack.tokens import make_token

    out: dict[str, Any] = {
        "config": {**asdict(config), "profile_dir": str(config.profile_dir or "")},
        "rows": [],
    }
    with local_stack(config.workers, config.dynamodb) as stack, FloorProcess() as floor:
        info = stack.info
        for k in config.clients:
            room = f"bench-{k}"
            tokens = [make_token(info["jwt_secret"], f"user{i}")[0] for i in range(k)]
            stack_urls = [f"{info['ws_url']}?token={t}&room_id={room}" for t in tokens]
            floor_urls = [f"{floor.url}?room_id={room}&user=user{i}" for i in range(k)]
            profiler = _start_profile(stack.pid, config, k)
            try:
                stack_result = asyncio.run(_measure(stack_urls, config, f"s{k}"))
            finally:
                profile = _stop_profile(profiler)
            left = _wait_for_disconnects(info["dynamodb"], config.timeout_s)
            floor_result = asyncio.run(_measure(floor_urls, config, f"f{k}"))
            out["rows"].append(
                {
                    "clients": k,
                    "stack": stack_result,
                    "floor": floor_result,
                    "p50_ratio": stack_result["p50_ms"] / floor_result["p50_ms"],
                    "completion_ratio": stack_result["completion_ms"] / floor_result["completion_ms"],
                    "records_left_after_disconnect": left,
                    **({"profile": profile} if profile else {}),
                }
            )
    return out


def _start_profile(pid: int, config: E2EConfig, k: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    if config.profile_dir is None or k != config.profile_clients:
        return None
    config.profile_dir.mkdir(parents=True, exist_ok=True)
    path = config.profile_dir / f"e2e-stack-k{k}.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(path),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    return proc, path


def _stop_profile(profiler: tuple[subprocess.Popen[bytes], Path] | None) -> dict[str, Any] | None:
    if profiler is None:
        return None
    import signal

    from bench.profile_summary import summarise_raw

    proc, path = profiler
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return summarise_raw(path) if path.exists() else {"error": "py-spy wrote nothing"}


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    rows = []
    for r in result["rows"]:
        for name in ("stack", "floor"):
            m = r[name]
            rows.append(
                [
                    r["clients"],
                    name,
                    m["messages"],
                    m["p50_ms"],
                    m["p95_ms"],
                    m["p99_ms"],
                    m["completion_ms"],
                    m["delivered_per_s"],
                    m["lost"],
                    m["duplicated"],
                    m["unexpected_frames"],
                    r["p50_ratio"] if name == "stack" else "",
                    r["completion_ratio"] if name == "stack" else "",
                ]
            )
    text = table(
        f"end to end: M = {cfg['messages']} messages per K, {cfg['senders']} senders at once, "
        f"{cfg['workers']} workers per function, DynamoDB {cfg['dynamodb']}; "
        "floor = bare websockets broadcast",
        [
            "K",
            "server",
            "msgs",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "completion ms",
            "copies/s",
            "lost",
            "dup",
            "other",
            "p50/floor",
            "compl/floor",
        ],
        rows,
    )
    profiles = [r["profile"] for r in result["rows"] if r.get("profile")]
    if profiles:
        from bench.profile_summary import render_summary

        text += "\n\n" + "\n\n".join(render_summary(p) for p in profiles)
    return text
