"""Section 4: new connections per second the local stack accepts, each ``$connect`` doing real JWT
verification and a DynamoDB write (one distinct user and token per connection)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.e2e import close_clients, open_clients
from bench.report import median, percentile, records_table


@dataclass(frozen=True, kw_only=True)
class ConnectConfig:
    connections: int = 300
    concurrency: tuple[int, ...] = (1, 8, 32)
    workers: int = 4
    timeout_s: float = 60.0
    dynamodb: str = "embedded"


async def _attempt(urls: list[str], concurrency: int, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    conns, handshakes, refused = await open_clients(urls, concurrency=concurrency, timeout_s=timeout_s)
    elapsed = time.perf_counter() - started
    await close_clients(conns)
    ms = [h * 1000 for h in handshakes]
    return {
        "concurrency": concurrency,
        "attempted": len(urls),
        "accepted": len(conns),
        "refused": refused,
        "elapsed_s": elapsed,
        "per_s": len(conns) / elapsed if elapsed else 0.0,
        "handshake_p50_ms": median(ms),
        "handshake_p95_ms": percentile(ms, 95),
    }


def run(config: ConnectConfig) -> dict[str, Any]:
    from bench.e2e import local_stack, wait_for_disconnects

    out: dict[str, Any] = {"config": asdict(config), "rows": []}
    with local_stack(config.workers, config.dynamodb) as stack:
        for concurrency in config.concurrency:
            # a room each: in one shared room every join tells everyone already there (N^2/2 presence posts),
            # which measures presence fan-out, not $connect
            urls = [
                stack.url(f"c{concurrency}u{i}", f"connect-{concurrency}-{i}")
                for i in range(config.connections)
            ]
            out["rows"].append(asyncio.run(_attempt(urls, concurrency, config.timeout_s)))
            out["rows"][-1]["records_left_after_disconnect"] = wait_for_disconnects(
                stack.dynamodb_endpoint, config.timeout_s
            )
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    return records_table(
        f"connect rate: {cfg['connections']} connections per row, each into a room of its own, "
        "$connect = HS256 verify + PutItem + its room's presence, "
        f"{cfg['workers']} workers, DynamoDB {cfg['dynamodb']} (API Gateway's quota: 500 new connections/s)",
        [
            ("at once", "concurrency"),
            ("accepted", "accepted"),
            ("refused", "refused"),
            ("seconds", "elapsed_s"),
            ("connections/s", "per_s"),
            ("handshake p50 ms", "handshake_p50_ms"),
            ("p95 ms", "handshake_p95_ms"),
        ],
        result["rows"],
    )
