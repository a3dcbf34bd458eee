"""Sharded fan-out vs one invocation: time to the last delivery for N recipients, in the same run.

**single** is one ``Sender.broadcast`` of the N ids in this process; **sharded** puts the jobs
``shared.shards.plan_shards`` cuts on the local stack's fanout queue with ``FanoutQueue``, posted by the real
``fanout`` function in pre-warmed awslambdaric workers (a process each) invoked by the stack's poller. Both
post to the kit's fake management API, which counts posts per connection id (lost, duplicated). Defaults
come from terraform/variables.tf; bench/README.md, "How `shards` runs", has the rest.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.report import Column, median, records_table
from local_stack.testing import FakeManagementApiProcess


@dataclass(frozen=True, kw_only=True)
class ShardsConfig:
    recipients: tuple[int, ...] = (1000, 10_000, 50_000)
    latency_ms: float = 20.0
    pool: int | None = None  # broadcast_concurrency; None: the Terraform default
    shard_size: int | None = None  # fanout_shard_size; None: the Terraform default
    max_concurrency: int | None = None  # fanout_max_concurrency; None: the Terraform default
    repeats: int = 1
    timeout_s: float = 600.0  # per sharded run


def terraform_defaults() -> dict[str, int]:
    from bench.functions import terraform

    variables = terraform().module.defaults()
    names = ("broadcast_concurrency", "fanout_shard_size", "fanout_max_concurrency", "fanout_batch_size")
    return {name: int(variables[name]) for name in names}


def _cpu_s(pid: int) -> float:
    """utime + stime of a live process, seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_posts(api: FakeManagementApiProcess, n: int, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = api.stats()
        if (stats["posts"] >= n and stats["in_flight"] == 0) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def _ids(n: int) -> list[str]:
    return [f"c{i:07d}" for i in range(n)]


def single(api: FakeManagementApiProcess, n: int, pool: int, data: bytes) -> dict[str, Any]:
    from shared.sender import Sender

    sender = Sender(pool_size=pool, on_gone=lambda _cid: None)
    sender.broadcast(api.endpoint_url, _ids(pool), data)  # warm: client, threads, kept-alive connections
    api.reset()
    cpu0, api_cpu0 = time.process_time(), _cpu_s(api.pid)
    start = time.perf_counter()
    result = sender.broadcast(api.endpoint_url, _ids(n), data)
    wall = time.perf_counter() - start
    stats = api.stats()
    cpu = time.process_time() - cpu0 + _cpu_s(api.pid) - api_cpu0
    return {"wall_s": wall, "cpu_s": cpu, "delivered": result.delivered, **_counts(stats, n)}


def _counts(stats: dict[str, int], n: int) -> dict[str, int]:
    return {
        "posts": stats["posts"],
        "lost": n - stats["distinct"],
        "duplicated": stats["posts"] - stats["distinct"],
        "max_in_flight": stats["max_in_flight"],
    }


class ShardedHarness:
    """The local stack running only ``fanout`` (its pool pre-warmed to the mapping's concurrency)."""

    def __init__(self, *, pool: int, max_concurrency: int) -> None:
        from local_stack import StackThread
        from local_stack.testing import test_config

        config = test_config(  # free ports, no web server, no reload, quiet, no reaper
            only_functions=("fanout",),
            min_workers=max_concurrency,
            max_workers=max_concurrency,
            tf_vars={"fanout_max_concurrency": max_concurrency, "broadcast_concurrency": pool},
            function_settings={"BROADCAST_CONCURRENCY": str(pool)},
        )
        self.thread = StackThread(config, start_timeout_s=120)
        self.max_concurrency = max_concurrency

    def __enter__(self) -> ShardedHarness:
        self.stack = self.thread.__enter__()
        assert self.stack.queues is not None and self.stack.event_sources is not None
        self.queue_url = self.stack.queues.urls["fanout"]
        self.poller = self.stack.event_sources.pollers["fanout"]
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.stop()

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self.stack.pools["fanout"].workers if w.process is not None]

    def run(
        self, api: FakeManagementApiProcess, n: int, shard_size: int, data: str, timeout_s: float
    ) -> dict[str, Any]:
        from shared.fanout_queue import FanoutQueue
        from shared.shards import ShardMember, encode_job, plan_shards

        assert self.stack.queues is not None
        queue = FanoutQueue(self.queue_url, client=self.stack.queues.client)
        members = [ShardMember(cid, f"u{cid}", 0) for cid in _ids(n)]
        api.reset()
        before_invocations = self.poller.stats.invocations
        pids = self.worker_pids()
        cpu0 = time.process_time() + sum(_cpu_s(p) for p in [*pids, api.pid])
        start = time.perf_counter()
        jobs = [
            encode_job(job)
            for job in plan_shards(
                endpoint=api.endpoint_url,
                room_id="bench-room",
                message_id=f"bench-{n}-{start}",
                data=data,
                members=members,
                shard_size=shard_size,
            )
        ]
        queue.enqueue(jobs)
        enqueued = time.perf_counter() - start
        stats = _wait_posts(api, n, timeout_s)
        wall = time.perf_counter() - start
        cpu = time.process_time() + sum(_cpu_s(p) for p in [*pids, api.pid]) - cpu0
        deadline = time.monotonic() + 30  # the last shards' deletes
        while self.stack.queues.depth("fanout") and time.monotonic() < deadline:
            time.sleep(0.05)
        return {
            "wall_s": wall,
            "enqueue_s": enqueued,
            "cpu_s": cpu,
            "shards": len(jobs),
            "invocations": self.poller.stats.invocations - before_invocations,
            "max_in_flight_invocations": self.poller.stats.max_in_flight,
            "left_on_queue": self.stack.queues.depth("fanout"),
            **_counts(stats, n),
        }


def crossover(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The N where sharding starts to pay: between the last measured N where one invocation was faster and
    the next one, where the difference (single - sharded) changes sign, interpolated linearly. (Not a fit:
    the sharded time is a staircase, one shard's queue hop below the shard size, parallel shards above.)"""
    ordered = sorted(rows, key=lambda r: r["recipients"])
    faster = [r["recipients"] for r in ordered if r["sharded_ms"] < r["single_ms"]]
    slower = [r["recipients"] for r in ordered if r["sharded_ms"] >= r["single_ms"]]
    n: float | None = None
    for before, after in itertools.pairwise(ordered):
        d0 = before["single_ms"] - before["sharded_ms"]
        d1 = after["single_ms"] - after["sharded_ms"]
        if d0 < 0 <= d1:
            n = before["recipients"] + (after["recipients"] - before["recipients"]) * -d0 / (d1 - d0)
    return {
        "interpolated_n": n,
        "largest_n_single_faster": max(slower) if slower else None,
        "smallest_n_sharded_faster": min(faster) if faster else None,
    }


def run(config: ShardsConfig) -> dict[str, Any]:
    defaults = terraform_defaults()
    pool = config.pool or defaults["broadcast_concurrency"]
    shard_size = config.shard_size or defaults["fanout_shard_size"]
    concurrency = config.max_concurrency or defaults["fanout_max_concurrency"]
    latency = config.latency_ms / 1000
    frame = '{"action":"message","room_id":"bench-room","message":"hello room","user_id":"bench"}'
    load_start = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with FakeManagementApiProcess(latency=latency) as api:
        singles = {
            n: [single(api, n, pool, frame.encode()) for _ in range(config.repeats)]
            for n in config.recipients
        }
        with ShardedHarness(pool=pool, max_concurrency=concurrency) as harness:
            harness.run(api, min(config.recipients), shard_size, frame, config.timeout_s)  # warm-up
            sharded = {
                n: [harness.run(api, n, shard_size, frame, config.timeout_s) for _ in range(config.repeats)]
                for n in config.recipients
            }
    cores = os.cpu_count() or 1
    for n in config.recipients:
        s, h = singles[n], sharded[n]
        single_ideal = math.ceil(n / pool) * config.latency_ms
        sharded_ideal = n / (concurrency * pool) * config.latency_ms
        row = {
            "recipients": n,
            "shards": h[0]["shards"],
            "single_ms": median([r["wall_s"] for r in s]) * 1000,
            "single_ideal_ms": single_ideal,
            "single_cpu_s": median([r["cpu_s"] for r in s]),
            "sharded_ms": median([r["wall_s"] for r in h]) * 1000,
            "sharded_ideal_ms": sharded_ideal,
            "sharded_cpu_s": median([r["cpu_s"] for r in h]),
            "enqueue_ms": median([r["enqueue_s"] for r in h]) * 1000,
            "lost": max(r["lost"] for r in s + h),
            "duplicated": max(r["duplicated"] for r in s + h),
            "left_on_queue": max(r["left_on_queue"] for r in h),
            "max_in_flight_invocations": max(r["max_in_flight_invocations"] for r in h),
            "single_runs": s,
            "sharded_runs": h,
        }
        row["single_x_ideal"] = row["single_ms"] / single_ideal
        row["sharded_x_ideal"] = row["sharded_ms"] / sharded_ideal
        row["sharded_cpu_floor_ms"] = row["sharded_cpu_s"] / cores * 1000
        row["speedup"] = row["single_ms"] / row["sharded_ms"]
        rows.append(row)
    return {
        "config": {
            **asdict(config),
            "pool": pool,
            "shard_size": shard_size,
            "max_concurrency": concurrency,
            "batch_size": defaults["fanout_batch_size"],
            "cores": cores,
        },
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "rows": rows,
        "crossover": crossover(rows),
    }


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    title = (
        f"sharded vs single: pool {cfg['pool']}, L = {cfg['latency_ms']:g} ms, shards of "
        f"{cfg['shard_size']:,}, max concurrency {cfg['max_concurrency']}, batch {cfg['batch_size']} "
        f"(median of {cfg['repeats']}; {cfg['cores']} cores, load {result['load_average_start']:.2f} "
        f"-> {result['load_average_end']:.2f})"
    )
    columns: list[Column] = [
        ("N", "recipients"),
        ("shards", "shards"),
        ("single ms", "single_ms"),
        ("ideal ms", "single_ideal_ms"),
        ("x ideal", "single_x_ideal"),
        ("sharded ms", "sharded_ms"),
        ("ideal ms", "sharded_ideal_ms"),
        ("x ideal", "sharded_x_ideal"),
        ("CPU s", "sharded_cpu_s"),
        ("CPU floor ms", "sharded_cpu_floor_ms"),
        ("enqueue ms", "enqueue_ms"),
        ("speedup", "speedup"),
        ("lost", "lost"),
        ("dup", "duplicated"),
    ]
    out = [records_table(title, columns, result["rows"], digits=2)]
    c = result["crossover"]
    if c["interpolated_n"] is not None:
        where = f"N ~ {c['interpolated_n']:,.0f} (interpolated)"
    elif c["smallest_n_sharded_faster"] is None:
        where = "not within the measured N (one invocation always faster)"
    else:
        where = "below the smallest N measured (sharded always faster)"
    out.append(
        f"crossover: {where}; one invocation faster up to N = {c['largest_n_single_faster'] or '-'}, "
        f"sharded faster from N = {c['smallest_n_sharded_faster'] or '-'}"
    )
    out.append(
        "ideal sharded = N / (max concurrency * pool) * L; CPU floor = CPU s of every process / cores "
        "(the sharded run's limit when cores < max concurrency)"
    )
    return "\n".join(out)
