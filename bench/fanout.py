"""Section 1: send_message's fan-out to N recipients against a fake management API holding each post L ms:
the handler (its paginated Query of the room's memberships on moto, then the bounded-pool broadcast) beside
the room read from the connections' ``room_id-index`` as before rooms, the seed's sequential boto3 loop on
the same ids and the ideal ceil(N / pool) x L; then a sweep of pool sizes against the 10,000 RPS throttle.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.env import MEMBERSHIPS_TABLE
from bench.functions import Timed, gateway_event, moto_tables, quiet_stdout
from bench.report import Column, ideal_s, median, ms, records_table
from bench.seed import seed_room
from local_stack.testing import FakeContext, FakeManagementApiProcess, load_function

SENDER_INDEX = 0  # the sender is one of the room's members (it receives its own message)
MAX_CONFIG_POOL = 200  # BROADCAST_CONCURRENCY's upper bound (shared/config.py)


@dataclass(frozen=True, kw_only=True)
class FanoutConfig:
    recipients: tuple[int, ...] = (100, 1000, 5000)
    latency_ms: float = 20.0
    pool: int = 32
    repeats: int = 3
    sequential_max: int = 1000
    sequential_sample: int = 500
    sweep_recipients: int = 1000
    sweep_pools: tuple[int, ...] = (8, 16, 32, 64, 128, 200)
    sweep_repeats: int = 1
    sweep_client: str = "lean"
    throttle_rps: int = 10_000
    page_size: int | None = None
    # "lean" is the code as shipped (shared/management_api.py, Sender's default client); "boto3" swaps in
    # the boto3 client the functions used before (bench/boto3_client.py), for comparison.
    clients: tuple[str, ...] = ("boto3", "lean")


@dataclass(kw_only=True)
class Harness:
    """moto table + fake API + a loaded send_message module."""

    api: FakeManagementApiProcess
    dynamodb: Any
    rooms: dict[int, list[str]] = field(default_factory=dict)
    module: Any = None
    query: Timed | None = None
    broadcast: Timed | None = None

    def room(self, n: int) -> str:
        if n not in self.rooms:
            self.rooms[n] = seed_room(self.dynamodb, f"room-{n}", n, memberships_table=MEMBERSHIPS_TABLE)
        return f"room-{n}"

    def load(self, pool: int, page_size: int | None, warm_members: int, client: str = "lean") -> None:
        os.environ["BROADCAST_CONCURRENCY"] = str(pool)
        self.module = load_function("send_message")
        service = self.module.service
        service.memberships.page_size = page_size
        self.module.store.page_size = page_size
        if client == "boto3":  # the same Sender, given the previous boto3 client through its client_factory
            from bench.boto3_client import boto3_factory
            from shared.sender import Sender

            service.sender = Sender(
                pool_size=pool, on_gone=lambda _cid: None, client_factory=boto3_factory(pool)
            )
        elif client != "lean":
            raise ValueError(f"unknown client {client!r} (boto3, lean)")
        self.query = Timed(service.memberships, "room")
        self.broadcast = Timed(service.sender, "broadcast")
        # Warm-up: the client, the thread pool and its kept-alive connections exist before measuring.
        self.invoke(warm_members)

    def handle(self, n: int, **fields: Any) -> float:
        """send_message's handler for a message from a member of the room of ``n``; its wall time."""
        body = {"action": "sendMessage", "room_id": self.room(n), "message": "hello room", **fields}
        event = gateway_event("sendMessage", body=body, connection_id=self.rooms[n][SENDER_INDEX])
        self.api.reset()
        start = time.perf_counter()
        with quiet_stdout():
            response = self.module.handler(event, FakeContext("bench", memory_limit_in_mb=1024))
        wall = time.perf_counter() - start
        if response.get("statusCode") != 200:
            raise RuntimeError(f"send_message answered {response}")
        return wall

    def invoke(self, n: int) -> dict[str, Any]:
        assert self.query is not None and self.broadcast is not None
        self.query.reset()
        self.broadcast.reset()
        wall = self.handle(n)
        room = self.room(n)
        stats = self.api.stats()
        members, result = self.query.last, self.broadcast.last
        started = time.perf_counter()
        records = self.module.store.room_members(room)  # the read before rooms: the connections' index
        record_query_s = time.perf_counter() - started
        return {
            "wall_s": wall,
            "query_s": self.query.calls[0],
            "fanout_s": self.broadcast.calls[0],
            "fanout_cpu_s": self.broadcast.cpu[0],
            "pages": members.pages,
            "items": members.items_read,
            "record_query_s": record_query_s,
            "record_items": records.items_read,
            "delivered": result.delivered,
            "posts_seen": stats["posts"],
            "max_in_flight": stats["max_in_flight"],
            "connections": stats["connections"],
        }

    def sequential(self, n: int, posts: int) -> float:
        """The seed's loop: one boto3 client, one post_to_connection after another; seconds for ``posts``."""
        import boto3

        client = boto3.client("apigatewaymanagementapi", endpoint_url=self.api.endpoint_url)
        client.post_to_connection(ConnectionId="warmup=", Data=b"{}")
        ids = [c.connection_id for c in self.module.store.room_members(self.room(n)).connections][:posts]
        data = b'{"action": "message", "message": "hello room"}'
        start = time.perf_counter()
        for cid in ids:
            client.post_to_connection(ConnectionId=cid, Data=data)
        return time.perf_counter() - start


def run(config: FanoutConfig) -> dict[str, Any]:
    latency = config.latency_ms / 1000
    pools = [p for p in config.sweep_pools if p <= MAX_CONFIG_POOL]
    out: dict[str, Any] = {"config": asdict(config), "rows": [], "sweep": []}
    with FakeManagementApiProcess(latency=latency) as api, moto_tables(api.endpoint_url) as dynamodb:
        harness = Harness(api=api, dynamodb=dynamodb)
        started = time.perf_counter()
        for n in config.recipients:
            harness.room(n)
        out["seed_s"] = time.perf_counter() - started

        sequential: dict[int, tuple[float, int]] = {}
        for client in config.clients:
            harness.load(config.pool, config.page_size, config.pool, client)
            for n in config.recipients:
                runs = [harness.invoke(n) for _ in range(config.repeats)]
                if n not in sequential:
                    measured = n if n <= config.sequential_max else min(n, config.sequential_sample)
                    sequential[n] = (harness.sequential(n, measured) * n / measured, measured)
                seq_total, measured = sequential[n]
                row = _row(n, runs, config.pool, latency, seq_total, measured)
                out["rows"].append({"client": client, **row})

        if pools and config.sweep_recipients:
            for pool in pools:
                harness.load(pool, config.page_size, max(pools), config.sweep_client)
                runs = [harness.invoke(config.sweep_recipients) for _ in range(config.sweep_repeats)]
                out["sweep"].append(_sweep_row(config, pool, runs, latency))
            out["best_pool"] = _best_pool(out["sweep"])
    return out


def _row(
    n: int, runs: list[dict[str, Any]], pool: int, latency: float, seq_s: float, seq_measured: int
) -> dict[str, Any]:
    wall = median([r["wall_s"] for r in runs])
    fanout = median([r["fanout_s"] for r in runs])
    ideal = ideal_s(n, pool, latency)
    return {
        "recipients": n,
        "pool": pool,
        "latency_ms": latency * 1000,
        "repeats": len(runs),
        "handler_s": wall,
        "handler_s_all": [r["wall_s"] for r in runs],
        "query_s": median([r["query_s"] for r in runs]),
        "record_query_s": median([r["record_query_s"] for r in runs]),
        "record_items_read": runs[0]["record_items"],
        "fanout_s": fanout,
        "fanout_cpu_ms_per_post": median([r["fanout_cpu_s"] for r in runs]) * 1000 / n,
        "ideal_s": ideal,
        "handler_over_ideal": wall / ideal,
        "fanout_over_ideal": fanout / ideal,
        "sequential_s": seq_s,
        "sequential_measured_posts": seq_measured,
        "sequential_extrapolated": seq_measured < n,
        "sequential_over_handler": seq_s / wall,
        "pages": runs[0]["pages"],
        "items_read": runs[0]["items"],
        "delivered": min(r["delivered"] for r in runs),
        "posts_seen_by_api": min(r["posts_seen"] for r in runs),
        "max_in_flight": max(r["max_in_flight"] for r in runs),
        "api_connections": max(r["connections"] for r in runs),
        "within_29s": wall < 29.0,
    }


def _sweep_row(config: FanoutConfig, pool: int, runs: list[dict[str, Any]], latency: float) -> dict[str, Any]:
    n = config.sweep_recipients
    fanout = median([r["fanout_s"] for r in runs])
    peak = pool / latency
    return {
        "pool": pool,
        "recipients": n,
        "handler_s": median([r["wall_s"] for r in runs]),
        "fanout_s": fanout,
        "ideal_s": ideal_s(n, pool, latency),
        "fanout_over_ideal": fanout / ideal_s(n, pool, latency),
        "measured_rps": n / fanout,
        "peak_rps": peak,
        "within_throttle": peak <= config.throttle_rps and n / fanout <= config.throttle_rps,
        "max_in_flight": max(r["max_in_flight"] for r in runs),
        "cpu_ms_per_post": median([r["fanout_cpu_s"] for r in runs]) * 1000 / n,
    }


def _best_pool(sweep: list[dict[str, Any]]) -> int | None:
    """Smallest pool whose fan-out time is within 5% of the fastest throttle-safe one (noise margin)."""
    safe = [r for r in sweep if r["within_throttle"]]
    if not safe:
        return None
    fastest = min(r["fanout_s"] for r in safe)
    return min(r["pool"] for r in safe if r["fanout_s"] <= fastest * 1.05)


def _sequential(row: dict[str, Any]) -> str:
    measured = str(row["sequential_measured_posts"])
    return ("extrap. from " if row["sequential_extrapolated"] else "all ") + measured


COLUMNS: list[Column] = [
    ("client", "client"),
    ("N", "recipients"),
    ("pages", "pages"),
    ("items", "items_read"),
    ("handler ms", ms("handler_s")),
    ("query ms", ms("query_s")),
    ("records ms", ms("record_query_s")),
    ("fan-out ms", ms("fanout_s")),
    ("ideal ms", ms("ideal_s")),
    ("hdl/ideal", "handler_over_ideal"),
    ("fo/ideal", "fanout_over_ideal"),
    ("sequential ms", ms("sequential_s")),
    ("sequential", _sequential),
    ("seq/hdl", "sequential_over_handler"),
    ("CPU ms/post", "fanout_cpu_ms_per_post"),
    ("in flight", "max_in_flight"),
    ("delivered", lambda r: f"{r['delivered']}/{r['recipients']}"),
]
SWEEP_COLUMNS: list[Column] = [
    ("pool", "pool"),
    ("fan-out ms", ms("fanout_s")),
    ("ideal ms", ms("ideal_s")),
    ("fo/ideal", "fanout_over_ideal"),
    ("measured RPS", "measured_rps"),
    ("peak RPS", "peak_rps"),
    ("in throttle", "within_throttle"),
    ("in flight", "max_in_flight"),
    ("CPU ms/post", "cpu_ms_per_post"),
]


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    title = (
        "fan-out: send_message handler (lean = shared/management_api.py as shipped; boto3 = the previous "
        f"client), pool {cfg['pool']}, L = {cfg['latency_ms']:g} ms (median of {cfg['repeats']}; query = the "
        "room's memberships, records = the same room read from the connections' room_id-index as before "
        "rooms; both moto, not DynamoDB)"
    )
    parts = [records_table(title, COLUMNS, result["rows"], digits=2)]
    if result.get("sweep"):
        best = ("", lambda r: "<- best" if r["pool"] == result.get("best_pool") else "")
        title = (
            f"pool sweep: N = {cfg['sweep_recipients']}, L = {cfg['latency_ms']:g} ms, throttle "
            f"{cfg['throttle_rps']:,} RPS (peak = pool / L, reached when CPU is not the limit)"
        )
        parts.append(records_table(title, [*SWEEP_COLUMNS, best], result["sweep"], digits=2))
    parts.append(_targets(result))
    return "\n\n".join(parts)


def _targets(result: dict[str, Any]) -> str:
    lines = ["targets (reported, not asserted):"]
    for r in result["rows"]:
        if r["recipients"] == 1000:
            lines.append(
                f"  N=1,000 ({r['client']}): handler {r['handler_over_ideal']:.2f}x ideal (fan-out alone "
                f"{r['fanout_over_ideal']:.2f}x; target <= 1.5x), {r['sequential_over_handler']:.1f}x faster "
                "than sequential (target >= 30x)"
            )
        if r["recipients"] == 5000:
            lines.append(
                f"  N=5,000 ({r['client']}): handler {r['handler_s']:.2f} s "
                "(API Gateway integration timeout 29 s)"
            )
    if result.get("best_pool") is not None:
        lines.append(f"  best pool within the throttle: {result['best_pool']}")
    return "\n".join(lines)
