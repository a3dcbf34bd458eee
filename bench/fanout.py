"""Section 1: fan-out of send_message to N recipients against a fake management API with latency L.

For each N, in the same run: the handler's wall time (its real paginated Query of the room's memberships
on moto, then the bounded-pool broadcast), the same room read the way it was before rooms (a Query of the
connections table's ``room_id-index``), the seed article's sequential loop (one boto3 client,
``post_to_connection`` per connection) on the same ids and the same fake, the ideal ceil(N / pool) x L,
and the ratios. Then a sweep of pool sizes at one N, against the account's callback throttle (10,000 RPS).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.env import MEMBERSHIPS_TABLE, MESSAGES_TABLE
from bench.functions import Timed, create_tables, message_event, quiet_stdout
from bench.report import median, table
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
class Run:
    wall_s: float
    query_s: float
    fanout_s: float
    fanout_cpu_s: float
    pages: int
    items: int
    record_query_s: float
    record_items: int
    delivered: int
    posts_seen: int
    max_in_flight: int
    connections: int


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

    def invoke(self, n: int) -> Run:
        assert self.query is not None and self.broadcast is not None
        room = self.room(n)
        sender = self.rooms[n][SENDER_INDEX]
        event = message_event(
            {"action": "sendMessage", "room_id": room, "message": "hello room"}, connection_id=sender
        )
        self.api.reset()
        self.query.reset()
        self.broadcast.reset()
        start = time.perf_counter()
        with quiet_stdout():
            response = self.module.handler(event, FakeContext("bench", memory_limit_in_mb=1024))
        wall = time.perf_counter() - start
        if response.get("statusCode") != 200:
            raise RuntimeError(f"send_message answered {response}")
        stats = self.api.stats()
        members, result = self.query.last, self.broadcast.last
        started = time.perf_counter()
        records = self.module.store.room_members(room)  # the read before rooms: the connections' index
        record_query_s = time.perf_counter() - started
        return Run(
            wall_s=wall,
            query_s=self.query.calls[0],
            fanout_s=self.broadcast.calls[0],
            fanout_cpu_s=self.broadcast.cpu[0],
            pages=members.pages,
            items=members.items_read,
            record_query_s=record_query_s,
            record_items=records.items_read,
            delivered=result.delivered,
            posts_seen=stats["posts"],
            max_in_flight=stats["max_in_flight"],
            connections=stats["connections"],
        )

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


def ideal_s(n: int, pool: int, latency_s: float) -> float:
    return math.ceil(n / pool) * latency_s


def run(config: FanoutConfig) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from bench.env import TABLE

    latency = config.latency_ms / 1000
    pools = [p for p in config.sweep_pools if p <= MAX_CONFIG_POOL]
    out: dict[str, Any] = {"config": asdict(config), "rows": [], "sweep": []}
    with FakeManagementApiProcess(latency=latency) as api, mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb)
        os.environ["DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"] = TABLE
        os.environ["DYNAMO_TABLE_NAME_CHAT_MESSAGES"] = MESSAGES_TABLE
        os.environ["DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS"] = MEMBERSHIPS_TABLE
        os.environ["RATE_LIMIT_PER_SECOND"] = "0"  # one sender posting repeatedly: not what is measured
        os.environ["WEBSOCKET_CALLBACK_URL"] = api.endpoint_url
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
    n: int, runs: list[Run], pool: int, latency: float, seq_s: float, seq_measured: int
) -> dict[str, Any]:
    wall = median([r.wall_s for r in runs])
    fanout = median([r.fanout_s for r in runs])
    ideal = ideal_s(n, pool, latency)
    return {
        "recipients": n,
        "pool": pool,
        "latency_ms": latency * 1000,
        "repeats": len(runs),
        "handler_s": wall,
        "handler_s_all": [r.wall_s for r in runs],
        "query_s": median([r.query_s for r in runs]),
        "record_query_s": median([r.record_query_s for r in runs]),
        "record_items_read": runs[0].record_items,
        "fanout_s": fanout,
        "fanout_cpu_ms_per_post": median([r.fanout_cpu_s for r in runs]) * 1000 / n,
        "ideal_s": ideal,
        "handler_over_ideal": wall / ideal,
        "fanout_over_ideal": fanout / ideal,
        "sequential_s": seq_s,
        "sequential_measured_posts": seq_measured,
        "sequential_extrapolated": seq_measured < n,
        "sequential_over_handler": seq_s / wall,
        "pages": runs[0].pages,
        "items_read": runs[0].items,
        "delivered": min(r.delivered for r in runs),
        "posts_seen_by_api": min(r.posts_seen for r in runs),
        "max_in_flight": max(r.max_in_flight for r in runs),
        "api_connections": max(r.connections for r in runs),
        "within_29s": wall < 29.0,
    }


def _sweep_row(config: FanoutConfig, pool: int, runs: list[Run], latency: float) -> dict[str, Any]:
    n = config.sweep_recipients
    fanout = median([r.fanout_s for r in runs])
    peak = pool / latency
    return {
        "pool": pool,
        "recipients": n,
        "handler_s": median([r.wall_s for r in runs]),
        "fanout_s": fanout,
        "ideal_s": ideal_s(n, pool, latency),
        "fanout_over_ideal": fanout / ideal_s(n, pool, latency),
        "measured_rps": n / fanout,
        "peak_rps": peak,
        "within_throttle": peak <= config.throttle_rps and n / fanout <= config.throttle_rps,
        "max_in_flight": max(r.max_in_flight for r in runs),
        "cpu_ms_per_post": median([r.fanout_cpu_s for r in runs]) * 1000 / n,
    }


def _best_pool(sweep: list[dict[str, Any]]) -> int | None:
    """Smallest pool whose fan-out time is within 5% of the fastest throttle-safe one (noise margin)."""
    safe = [r for r in sweep if r["within_throttle"]]
    if not safe:
        return None
    fastest = min(r["fanout_s"] for r in safe)
    return min(r["pool"] for r in safe if r["fanout_s"] <= fastest * 1.05)


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    rows = [
        [
            r["client"],
            r["recipients"],
            r["pages"],
            r["items_read"],
            r["handler_s"] * 1000,
            r["query_s"] * 1000,
            r["record_query_s"] * 1000,
            r["fanout_s"] * 1000,
            r["ideal_s"] * 1000,
            r["handler_over_ideal"],
            r["fanout_over_ideal"],
            r["sequential_s"] * 1000,
            ("extrap. from " if r["sequential_extrapolated"] else "all ")
            + str(r["sequential_measured_posts"]),
            r["sequential_over_handler"],
            r["fanout_cpu_ms_per_post"],
            r["max_in_flight"],
            f"{r['delivered']}/{r['recipients']}",
        ]
        for r in result["rows"]
    ]
    parts = [
        table(
            "fan-out: send_message handler (lean = shared/management_api.py as shipped; boto3 = the previous "
            "client), "
            f"pool {cfg['pool']}, L = {cfg['latency_ms']:g} ms "
            f"(median of {cfg['repeats']}; query = the room's memberships, records = the same room read from "
            "the connections' room_id-index as before rooms; both moto, not DynamoDB)",
            [
                "client",
                "N",
                "pages",
                "items",
                "handler ms",
                "query ms",
                "records ms",
                "fan-out ms",
                "ideal ms",
                "hdl/ideal",
                "fo/ideal",
                "sequential ms",
                "sequential",
                "seq/hdl",
                "CPU ms/post",
                "in flight",
                "delivered",
            ],
            rows,
            digits=2,
        )
    ]
    if result.get("sweep"):
        srows = [
            [
                r["pool"],
                r["fanout_s"] * 1000,
                r["ideal_s"] * 1000,
                r["fanout_over_ideal"],
                r["measured_rps"],
                r["peak_rps"],
                r["within_throttle"],
                r["max_in_flight"],
                r["cpu_ms_per_post"],
                "<- best" if r["pool"] == result.get("best_pool") else "",
            ]
            for r in result["sweep"]
        ]
        parts.append(
            table(
                f"pool sweep: N = {cfg['sweep_recipients']}, L = {cfg['latency_ms']:g} ms, throttle "
                f"{cfg['throttle_rps']:,} RPS (peak = pool / L, reached when CPU is not the limit)",
                [
                    "pool",
                    "fan-out ms",
                    "ideal ms",
                    "fo/ideal",
                    "measured RPS",
                    "peak RPS",
                    "in throttle",
                    "in flight",
                    "CPU ms/post",
                    "",
                ],
                srows,
                digits=2,
            )
        )
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
