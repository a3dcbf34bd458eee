"""What storing messages costs: the store's share of a broadcast, and a history page through the stack.

1. ``store``: send_message's handler for N recipients (bench/fanout.py's harness), interleaved: with a store
   that stores nothing (the broadcast alone), as shipped (one conditional ``PutItem``) and with a
   ``client_msg_id`` (``TransactWriteItems`` plus the ack post). moto's write is slower than DynamoDB's, so
   the ratios to the broadcast alone are an upper bound.
2. ``history``: ``getHistory`` round trips (newest, ``before``, ``after``) through the local stack.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.fanout import Harness
from bench.report import median, ms, percentile, records_table, table

VARIANTS = ("broadcast only", "stored", "stored + client_msg_id")


@dataclass(frozen=True, kw_only=True)
class HistoryBenchConfig:
    recipients: tuple[int, ...] = (1, 100, 1000)
    latency_ms: float = 20.0
    pool: int = 32
    repeats: int = 5
    stored_messages: int = 300
    page_limits: tuple[int, ...] = (50, 100)
    requests: int = 15  # at most 15: each is a frame of the reader's rate limit
    workers: int = 2


class NoStore:
    """A message store that stores nothing: what the handler cost before messages were stored."""

    def __init__(self) -> None:
        from shared.ids import UlidGenerator

        self._ids = UlidGenerator()

    def save(
        self, *, room_id: str, user_id: str, text: str, name: str | None, client_msg_id: str | None
    ) -> Any:
        from shared.messages import SaveResult, StoredMessage
        from shared.protocol import utc_timestamp

        message = StoredMessage(
            room_id=room_id,
            message_id=self._ids.new(),
            user_id=user_id,
            message=text,
            timestamp=utc_timestamp(),
            ttl=0,
            name=name,
            client_msg_id=client_msg_id,
        )
        return SaveResult(message=message, duplicate=False)


def _store_rows(config: HistoryBenchConfig) -> list[dict[str, Any]]:
    from bench.functions import moto_tables
    from local_stack.testing import FakeManagementApiProcess

    rows = []
    with (
        FakeManagementApiProcess(latency=config.latency_ms / 1000) as api,
        moto_tables(api.endpoint_url) as dynamodb,
    ):
        harness = Harness(api=api, dynamodb=dynamodb)
        harness.load(config.pool, None, config.pool)
        module = harness.module
        shipped_store = module.service.messages
        sequence = 0

        def invoke(n: int, variant: str) -> float:
            nonlocal sequence
            sequence += 1
            module.service.messages = NoStore() if variant == VARIANTS[0] else shipped_store
            if variant == VARIANTS[2]:
                return harness.handle(n, client_msg_id=f"bench-{sequence}")
            return harness.handle(n)

        for n in config.recipients:
            for variant in VARIANTS:  # warm each path once
                invoke(n, variant)
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(config.repeats):
                for variant in VARIANTS:  # interleaved: drift in machine load hits all three alike
                    times[variant].append(invoke(n, variant))
            base = median(times[VARIANTS[0]])
            rows.append(
                {
                    "recipients": n,
                    "broadcast_only_s": base,
                    "stored_s": median(times[VARIANTS[1]]),
                    "stored_client_msg_id_s": median(times[VARIANTS[2]]),
                    "stored_over_broadcast": median(times[VARIANTS[1]]) / base,
                    "client_msg_id_over_broadcast": median(times[VARIANTS[2]]) / base,
                    "repeats": config.repeats,
                }
            )
        module.service.messages = shipped_store
    return rows


async def _history_rows(config: HistoryBenchConfig, stack: Any) -> list[dict[str, Any]]:
    from websockets.asyncio.client import connect

    from local_stack.testing.ws import ChatClient

    def url(user: str) -> str:
        return str(stack.url(user, "bench-history"))

    ids: list[str] = []
    per_user = 15  # within the per-user rate limit's burst
    for start in range(0, config.stored_messages, per_user):
        seeder = await ChatClient.open(url(f"seed{start // per_user}"))
        for i in range(start, min(config.stored_messages, start + per_user)):
            ids.append((await seeder.send_acked(f"m{i}", f"s{i}"))["message_id"])
        await seeder.close()
    rows = []
    middle = ids[len(ids) // 2]
    async with connect(url("reader"), open_timeout=60) as ws:
        for limit in config.page_limits:
            for kind, fields in (
                ("newest", {}),
                ("before", {"before": middle}),
                ("after", {"after": middle}),
            ):
                samples, counts = [], []
                requests = min(config.requests, 15)  # each request is a frame of the reader's rate limit
                for _ in range(requests):
                    began = time.perf_counter()
                    await ws.send(json.dumps({"action": "getHistory", "limit": limit, **fields}))
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame.get("action") in ("history", "error"):
                            break
                    samples.append((time.perf_counter() - began) * 1000)
                    if frame.get("action") != "history":
                        raise RuntimeError(f"getHistory answered {frame}")
                    counts.append(len(frame["messages"]))
                rows.append(
                    {
                        "page": kind,
                        "limit": limit,
                        "requests": requests,
                        "messages": min(counts),
                        "p50_ms": median(samples),
                        "p95_ms": percentile(samples, 95),
                        "max_ms": max(samples),
                    }
                )
                await asyncio.sleep(requests / 10 + 0.5)  # let the reader's bucket refill (10 a second)
    return rows


def run(config: HistoryBenchConfig) -> dict[str, Any]:
    from bench.e2e import local_stack

    out: dict[str, Any] = {"config": asdict(config)}
    out["store"] = _store_rows(config)
    with local_stack(config.workers, "embedded") as stack:
        out["history"] = asyncio.run(_history_rows(config, stack))
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    store = records_table(
        "store cost: send_message handler, broadcast only vs stored (PutItem) vs stored with client_msg_id "
        f"(TransactWriteItems + ack), pool {cfg['pool']}, L = {cfg['latency_ms']:g} ms, "
        f"median of {cfg['repeats']} interleaved (moto: an upper bound on DynamoDB's write)",
        [
            ("N", "recipients"),
            ("broadcast ms", ms("broadcast_only_s")),
            ("stored ms", ms("stored_s")),
            ("+ client_msg_id ms", ms("stored_client_msg_id_s")),
            ("stored/broadcast", "stored_over_broadcast"),
            ("cmid/broadcast", "client_msg_id_over_broadcast"),
        ],
        result["store"],
        digits=2,
    )
    history = table(
        f"history page latency through the local stack ({cfg['stored_messages']} stored messages, "
        f"{cfg['workers']} workers; round trip of one getHistory)",
        ["page", "limit", "requests", "messages", "p50 ms", "p95 ms", "max ms"],
        [
            [r["page"], r["limit"], r["requests"], r["messages"], r["p50_ms"], r["p95_ms"], r["max_ms"]]
            for r in result["history"]
        ],
        digits=1,
    )
    return f"{store}\n\n{history}"
