"""Section 2: end to end through the local stack, beside a bare websockets server (the floor).

For each K: K clients join one room; M messages are sent in rounds of S at once (S clients sending
simultaneously, each round waiting for every copy). Reported for the stack and the floor, same run, same
clients: delivery latency p50/p95/p99 (send to receipt, per recipient), broadcast completion (send to the
last recipient, median per message), copies delivered per second, lost and duplicated copies. Then the
target: one broadcast at a time to ``target_clients`` receivers, ``target_repeats`` times, the median
completion against the floor's.

The stack is the kit's (``local_stack.testing.StackProcess``: ``python -m local_stack up`` in a child, so its
CPU and GIL are not the clients'), with every execution environment pre-warmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.report import median, percentile, table
from local_stack.testing import MotoProcess, StackProcess


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
    target_clients: int = 200  # one broadcast at a time to this many; 0 skips the target
    target_repeats: int = 5
    stack_args: tuple[str, ...] = ()  # more ``python -m local_stack up`` flags, e.g. --var NAME=VALUE


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


def query_times(endpoint: str, room: str, repeats: int = 5) -> dict[str, Any]:
    """The Query of ``room``'s memberships (one page) on the stack's DynamoDB, ``repeats`` times: the HTTP
    round trip alone (moto's work and the wire, the answer left unparsed) and the botocore call a function
    makes (the same plus botocore parsing every item, which a function pays against DynamoDB too)."""
    import http.client
    from urllib.parse import urlsplit

    from bench.env import MEMBERSHIPS_TABLE, REGION
    from local_stack.dynamodb import dynamodb_client

    params = {
        "TableName": MEMBERSHIPS_TABLE,
        "KeyConditionExpression": "room_id = :r",
        "ExpressionAttributeValues": {":r": {"S": room}},
    }
    client = dynamodb_client(endpoint, REGION)
    items = len(client.query(**params)["Items"])  # also opens the client's connection
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.Query",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=local/20260101/{REGION}/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    body = json.dumps(params)
    raw: list[float] = []
    parsed: list[float] = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            conn.request("POST", "/", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            raw.append((time.perf_counter() - start) * 1000)
            if response.status != 200:  # never time an error answer as the Query
                raise RuntimeError(f"Query answered {response.status}: {answer[:300]!r}")
            start = time.perf_counter()
            client.query(**params)
            parsed.append((time.perf_counter() - start) * 1000)
    finally:
        conn.close()
    return {"items": items, "http_ms": median(raw), "botocore_ms": median(parsed), "repeats": repeats}


async def _measure(
    urls: list[str],
    config: E2EConfig,
    tag: str,
    *,
    messages: int,
    senders: int,
    probe: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One K: connect, broadcast, then (clients still connected) ``probe``, then close."""
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
            messages=messages,
            senders=senders,
            timeout_s=config.timeout_s,
            frame=lambda key: {"action": "sendMessage", "message": key},
            tag=tag,
        )
        probed = probe() if probe is not None else None
    finally:
        await close_clients(conns)
    return {
        **summarise(deliveries, span, len(urls)),
        "connect_s": connect_s,
        "handshake_p50_ms": median(handshakes) * 1000,
        **({"query": probed} if probed else {}),
    }


def wait_for_disconnects(dynamodb: str, timeout_s: float) -> int:
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


@contextlib.contextmanager
def local_stack(workers: int, dynamodb: str, args: tuple[str, ...] = ()) -> Iterator[StackProcess]:
    """The stack with its embedded moto (``dynamodb="embedded"``, as ``make dev``) or with moto's server in a
    process of its own (``"process"``: the kit's ``MotoProcess``, through the stack's DYNAMODB_ENDPOINT)."""
    if dynamodb not in ("embedded", "process"):
        raise ValueError(f"dynamodb must be embedded or process, got {dynamodb!r}")
    with contextlib.ExitStack() as stack:
        env = (
            {"DYNAMODB_ENDPOINT": stack.enter_context(MotoProcess()).endpoint}
            if dynamodb == "process"
            else {}
        )
        yield stack.enter_context(
            StackProcess(args=args, workers=workers, min_workers=workers, env=env, echo_logs=False)
        )


def run(config: E2EConfig) -> dict[str, Any]:
    from bench.floor_server import FloorProcess

    out: dict[str, Any] = {
        "config": {**asdict(config), "profile_dir": str(config.profile_dir or "")},
        "rows": [],
    }
    with local_stack(config.workers, config.dynamodb, config.stack_args) as stack, FloorProcess() as floor:

        def both(k: int, messages: int, senders: int, tag: str) -> dict[str, Any]:
            room = f"bench-{tag}{k}"
            profiler = _start_profile(stack.pid, config, k) if tag == "k" else None
            try:
                stack_result = asyncio.run(
                    _measure(
                        [stack.url(f"user{i}", room) for i in range(k)],
                        config,
                        f"s{tag}{k}",
                        messages=messages,
                        senders=senders,
                        probe=(lambda: query_times(stack.dynamodb_endpoint, room)) if tag == "t" else None,
                    )
                )
            finally:
                profile = _stop_profile(profiler)
            left = wait_for_disconnects(stack.dynamodb_endpoint, config.timeout_s)
            floor_urls = [f"{floor.url}?room_id={room}&user=user{i}" for i in range(k)]
            floor_result = asyncio.run(
                _measure(floor_urls, config, f"f{tag}{k}", messages=messages, senders=senders)
            )
            return {
                "clients": k,
                "stack": stack_result,
                "floor": floor_result,
                "p50_ratio": stack_result["p50_ms"] / floor_result["p50_ms"],
                "completion_ratio": stack_result["completion_ms"] / floor_result["completion_ms"],
                "records_left_after_disconnect": left,
                **({"profile": profile} if profile else {}),
            }

        for k in config.clients:
            out["rows"].append(both(k, config.messages, config.senders, "k"))
        if config.target_clients:
            out["target"] = both(config.target_clients, config.target_repeats, 1, "t")
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
    target = result.get("target")
    if target:
        text += (
            f"\n\ntarget: one broadcast to {target['clients']} receivers at a time, median of "
            f"{target['stack']['messages']}: stack {target['stack']['completion_ms']:.1f} ms, floor "
            f"{target['floor']['completion_ms']:.1f} ms = {target['completion_ratio']:.1f}x the floor "
            f"(target <= 15x; p50 {target['p50_ratio']:.1f}x; lost {target['stack']['lost']})"
        )
        query = target["stack"].get("query")
        if query:
            text += (
                f"\nmoto's Query of the room's {query['items']} memberships, median of {query['repeats']}: "
                f"{query['http_ms']:.1f} ms HTTP round trip (moto's work, answer unparsed), "
                f"{query['botocore_ms']:.1f} ms through botocore (items parsed, as the function does)"
            )
    profiles = [r["profile"] for r in result["rows"] if r.get("profile")]
    if profiles:
        from bench.profile_summary import render_summary

        text += "\n\n" + "\n\n".join(render_summary(p) for p in profiles)
    return text
