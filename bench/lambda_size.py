"""send_message's broadcast at Lambda memory sizes: the fan-out under the CPU share each size buys.

Each size runs ``Sender`` as shipped in a child process in a cgroup v1 ``cpu`` group whose CFS quota is that
size's share of one CPU (MB / 1,769), or unthrottled and ``estimated`` when no cgroup is writable; the fake
management API stays outside. bench/README.md, "How `lambda` emulates a memory size", has the details and
the cost formula (the broadcast's wall time billed; the GetItem and Query before it left out).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.env import ROOT
from bench.report import Column, ideal_s, median, ms, records_table
from local_stack.testing import FakeManagementApiProcess

MB_PER_VCPU = 1769
# Lambda x86_64, us-east-1, first pricing tier (aws.amazon.com/lambda/pricing); arm64 is 20 % less per GB-s.
PRICE_PER_GB_S = 0.0000166667
PRICE_PER_REQUEST = 0.20 / 1_000_000
# API Gateway WebSocket: $1.00 per million messages (first billion), one message per post up to 32 KB.
PRICE_PER_MESSAGE = 1.00 / 1_000_000
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
DATA = b'{"action": "message", "room_id": "general", "user_id": "alice", "message": "hello room"}'


@dataclass(frozen=True, kw_only=True)
class LambdaSizeConfig:
    memory_mb: tuple[int, ...] = (512, 1024, 1769)
    recipients: tuple[int, ...] = (100, 1000, 5000)
    latency_ms: float = 20.0
    pool: int = 32
    repeats: int = 3
    shipped_mb: int | None = None  # for the targets line; None: send_message's memory_size in terraform/


def vcpu(memory_mb: int) -> float:
    return min(memory_mb, MB_PER_VCPU) / MB_PER_VCPU


def cost_per_million(wall_s: float, memory_mb: int) -> float:
    billed_s = math.ceil(wall_s * 1000) / 1000
    return 1_000_000 * (billed_s * memory_mb / 1024 * PRICE_PER_GB_S + PRICE_PER_REQUEST)


@contextlib.contextmanager
def cpu_group(memory_mb: int) -> Iterator[Path | None]:
    """A cgroup v1 cpu group limited to ``memory_mb``'s vCPU share; None when none can be made."""
    path = CGROUP_CPU / f"bench-lambda-{os.getpid()}-{memory_mb}"
    try:
        path.mkdir()
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(round(PERIOD_US * vcpu(memory_mb))))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        yield None
        return
    try:
        yield path
    finally:
        for _ in range(50):  # the child has exited; the kernel may take a moment to empty the group
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)
        else:
            print(f"could not remove {path}: remove it with rmdir", file=sys.stderr)


def _child_main(spec: dict[str, Any]) -> None:
    """In the throttled process: broadcast to each N, ``repeats`` times, print one JSON line."""
    from bench import env

    env.setup()
    from shared.sender import Sender

    sender = Sender(pool_size=spec["pool"], on_gone=lambda cid: None)
    endpoint = spec["endpoint"]
    sender.broadcast(endpoint, [f"w{i:014d}=" for i in range(spec["pool"])], DATA)  # pool and connections
    out = {}
    for n in spec["recipients"]:
        ids = [f"c{i:014d}=" for i in range(n)]
        runs = []
        for _ in range(spec["repeats"]):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = sender.broadcast(endpoint, ids, DATA)
            runs.append((time.perf_counter() - start, time.process_time() - start_cpu, result.delivered))
        out[str(n)] = runs
    print(json.dumps(out), flush=True)


def _run_child(group: Path | None, spec: dict[str, Any]) -> dict[str, Any]:
    def enter_group() -> None:  # in the child, before exec: everything it runs is throttled
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    proc = subprocess.run(
        [sys.executable, "-m", "bench.lambda_size", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=enter_group,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"fan-out child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    throttled = _throttled(group)
    return {"runs": json.loads(proc.stdout.strip().splitlines()[-1]), "throttled": throttled}


def _throttled(group: Path | None) -> dict[str, int] | None:
    if group is None:
        return None
    try:
        fields = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    except OSError:
        return None
    return {k: int(v) for k, v in fields.items() if k in ("nr_periods", "nr_throttled", "throttled_time")}


def run(config: LambdaSizeConfig) -> dict[str, Any]:
    latency = config.latency_ms / 1000
    out: dict[str, Any] = {"config": asdict(config), "rows": [], "groups": {}}
    out["shipped_mb"] = config.shipped_mb or shipped_memory_mb()
    with FakeManagementApiProcess(latency=latency) as api:
        spec = {
            "endpoint": api.endpoint_url,
            "pool": config.pool,
            "recipients": list(config.recipients),
            "repeats": config.repeats,
        }
        for mb in config.memory_mb:
            with cpu_group(mb) as group:
                child = _run_child(group, spec)
            out["groups"][str(mb)] = {"cgroup": group is not None, "cpu_stat": child["throttled"]}
            for n in config.recipients:
                runs = child["runs"][str(n)]
                wall = median([w for w, _, _ in runs])
                cpu = median([c for _, c, _ in runs])
                estimated = group is None
                if estimated:
                    wall = max(wall, cpu / vcpu(mb))
                ideal = ideal_s(n, config.pool, latency)
                out["rows"].append(
                    {
                        "memory_mb": mb,
                        "vcpu": vcpu(mb),
                        "recipients": n,
                        "emulation": "estimated" if estimated else "cgroup quota",
                        "wall_s": wall,
                        "wall_s_all": [w for w, _, _ in runs],
                        "cpu_ms_per_post": cpu * 1000 / n,
                        "ideal_s": ideal,
                        "over_ideal": wall / ideal,
                        "delivered": min(d for _, _, d in runs),
                        "cost_per_million_usd": cost_per_million(wall, mb),
                        "api_gateway_messages_per_million_usd": 1_000_000 * n * PRICE_PER_MESSAGE,
                    }
                )
    out["cheapest_within_1_5x_at_1000"] = _choice(out["rows"])
    return out


def shipped_memory_mb() -> int:
    from bench.functions import terraform

    return int(terraform().functions["send_message"].memory_size)


def _choice(rows: list[dict[str, Any]]) -> int | None:
    """The cheapest size whose 1,000-recipient broadcast stays within 1.5x of the ideal."""
    fits = [r for r in rows if r["recipients"] == 1000 and r["over_ideal"] <= 1.5]
    return min(fits, key=lambda r: r["cost_per_million_usd"])["memory_mb"] if fits else None


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    title = (
        f"fan-out at Lambda sizes: Sender as shipped, pool {cfg['pool']}, L = {cfg['latency_ms']:g} ms, "
        f"CPU quota = MB / {MB_PER_VCPU} of one CPU (cgroup v1 cfs quota; median of {cfg['repeats']})"
    )
    columns: list[Column] = [
        ("MB", "memory_mb"),
        ("vCPU", "vcpu"),
        ("N", "recipients"),
        ("emulation", "emulation"),
        ("wall ms", ms("wall_s")),
        ("ideal ms", ms("ideal_s")),
        ("x ideal", "over_ideal"),
        ("CPU ms/post", "cpu_ms_per_post"),
        ("delivered", lambda r: f"{r['delivered']}/{r['recipients']}"),
        ("Lambda $ per 1M broadcasts", "cost_per_million_usd"),
    ]
    sizes = records_table(title, columns, result["rows"], digits=2)
    notes = [
        f"price: x86_64 ${PRICE_PER_GB_S} per GB-s + ${PRICE_PER_REQUEST * 1e6:.2f} per 1M requests, "
        "billed ms = broadcast wall time (GetItem + Query left out)",
        "API Gateway messages, the same at every size: "
        + ", ".join(
            f"N={n:,} ${1_000_000 * n * PRICE_PER_MESSAGE:,.0f} per 1M broadcasts" for n in cfg["recipients"]
        ),
    ]
    for mb, group in result["groups"].items():
        stat = group["cpu_stat"] or {}
        how = "cgroup quota" if group["cgroup"] else "no writable cgroup: estimated from CPU time"
        notes.append(
            f"{mb} MB: {how}"
            + (f", throttled in {stat['nr_throttled']} of {stat['nr_periods']} periods" if stat else "")
        )
    choice = result.get("cheapest_within_1_5x_at_1000")
    notes.append(
        f"cheapest size with N=1,000 within 1.5x ideal: {choice} MB" if choice else "no size within 1.5x"
    )
    mb = result["shipped_mb"]
    shipped = [r for r in result["rows"] if r["memory_mb"] == mb and r["recipients"] == 1000]
    if shipped:
        notes.append(
            f"target (reported, not asserted): N=1,000 at the shipped {mb} MB: "
            f"{shipped[0]['over_ideal']:.2f}x ideal (target <= 1.5x)"
        )
    return "\n\n".join([sizes, "\n".join(notes)])


if __name__ == "__main__":
    _child_main(json.loads(sys.argv[1]))
