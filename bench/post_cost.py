"""CPU per PostToConnection on the sender's side, by client: boto3 (as the functions used it before,
bench/boto3_client.py), the shipped SigV4 + urllib3 client (shared/management_api.py, what
shared/sender.py builds) and an unsigned urllib3 POST (the floor), each sequential against the fake
management API with no latency; then where each signed client's time goes (cProfile).
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.boto3_client import boto3_management_client
from bench.fake_api import FakeApiProcess
from bench.report import median, table
from shared.sender import management_client

LEAN = "lean: shared.management_api"
DATA = b'{"action": "message", "room_id": "general", "user_id": "alice", "message": "hello room"}'


@dataclass(frozen=True, kw_only=True)
class PostCostConfig:
    posts: int = 500
    rounds: int = 3
    profile_posts: int = 300


def _clients(endpoint: str) -> dict[str, Callable[[str], Any]]:
    import urllib3

    boto = boto3_management_client(endpoint, pool_size=1)
    lean = management_client(endpoint, pool_size=1)
    raw = urllib3.PoolManager(maxsize=1, retries=False)
    return {
        "boto3": lambda cid: boto.post_to_connection(ConnectionId=cid, Data=DATA),
        LEAN: lambda cid: lean.post_to_connection(ConnectionId=cid, Data=DATA),
        "raw urllib3, unsigned": lambda cid: raw.request(
            "POST", f"{endpoint}/@connections/{cid}", body=DATA, retries=False
        ),
    }


def _measure(post: Callable[[str], Any], n: int) -> tuple[float, float]:
    ids = [f"c{i:014d}=" for i in range(n)]
    start, start_cpu = time.perf_counter(), time.process_time()
    for cid in ids:
        post(cid)
    return (time.perf_counter() - start) / n, (time.process_time() - start_cpu) / n


def _area(filename: str) -> str:
    for marker in ("/botocore/", "/urllib3/", "/boto3/", "/aws_lambda_powertools/"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            sub = tail.split("/")[0].removesuffix(".py")
            return f"{marker.strip('/')}.{sub}"
    if filename.startswith("~") or "<built-in" in filename:
        return "builtins (C)"
    name = filename.rsplit("/", 1)[-1].removesuffix(".py")
    return f"stdlib {name}" if "/lib/python3" in filename else name


def profile_client(client: Any, n: int) -> dict[str, Any]:
    client.post_to_connection(ConnectionId="warmup=", Data=DATA)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        client.post_to_connection(ConnectionId=f"p{i:014d}=", Data=DATA)
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_area: dict[str, float] = defaultdict(float)
    functions = []
    total = 0.0
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, cumtime, _callers) in entries:
        by_area[_area(filename)] += tottime
        total += tottime
        functions.append((cumtime, f"{_area(filename)}:{name}"))
    functions.sort(reverse=True)
    return {
        "posts": n,
        "total_ms_per_post": total * 1000 / n,
        "by_area_ms_per_post": {
            k: v * 1000 / n for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])[:12]
        },
        "top_cumulative_ms_per_post": [(name, cum * 1000 / n) for cum, name in functions[:25]],
    }


def run(config: PostCostConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"config": asdict(config), "rows": []}
    with FakeApiProcess(latency=0.0) as api:
        clients = _clients(api.endpoint_url)
        for post in clients.values():
            post("warmup=")
        samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for _ in range(config.rounds):  # interleaved, so load changes hit every client alike
            for name, post in clients.items():
                samples[name].append(_measure(post, config.posts))
        boto_cpu = median([cpu for _, cpu in samples["boto3"]])
        for name, values in samples.items():
            cpu = median([c for _, c in values])
            out["rows"].append(
                {
                    "client": name,
                    "wall_ms_per_post": median([w for w, _ in values]) * 1000,
                    "cpu_ms_per_post": cpu * 1000,
                    "cpu_vs_boto3": cpu / boto_cpu,
                    "max_posts_per_s_one_core": 1 / cpu,
                }
            )
        if config.profile_posts:
            out["profile"] = profile_client(
                management_client(api.endpoint_url, pool_size=1), config.profile_posts
            )
            out["profile_boto3"] = profile_client(
                boto3_management_client(api.endpoint_url, pool_size=1), config.profile_posts
            )
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    parts = [
        table(
            f"CPU per post_to_connection, sequential, no latency ({cfg['posts']} posts x {cfg['rounds']} "
            "rounds, median)",
            ["client", "wall ms/post", "CPU ms/post", "CPU vs boto3", "posts/s per core"],
            [
                [
                    r["client"],
                    r["wall_ms_per_post"],
                    r["cpu_ms_per_post"],
                    r["cpu_vs_boto3"],
                    r["max_posts_per_s_one_core"],
                ]
                for r in result["rows"]
            ],
            digits=3,
        )
    ]
    for key, name in (("profile", "the shipped client's"), ("profile_boto3", "boto3's")):
        profile = result.get(key)
        if profile:
            parts.append(
                table(
                    f"where {name} post_to_connection spends CPU (cProfile, {profile['posts']} posts; "
                    f"profiled total {profile['total_ms_per_post']:.3f} ms/post)",
                    ["area (self time)", "ms/post"],
                    list(profile["by_area_ms_per_post"].items()),
                    digits=3,
                )
            )
    return "\n\n".join(parts)
