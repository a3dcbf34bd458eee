"""CPU per PostToConnection by client, sequential against the fake management API with no latency: boto3 as
the functions used it before (bench/boto3_client.py), the shipped SigV4 + libcurl client, the SigV4 +
urllib3 client it replaced (bench/urllib3_client.py), and unsigned floors on both transports; cProfile of
each signed client. Then the peers in one fan-out (N posts, pool P, L ms per post): the seed's loop, boto3
+ threads, asyncio + aiohttp, ``Sender`` with the urllib3 client, unsigned on each transport (the floors)
and as shipped.

Two floors, two ratios: ``raw urllib3, unsigned`` (and the unsigned urllib3 ``Sender`` in the fan-out) is
the reference the target is set against (CPU per post within 1.15x of it); ``unsigned libcurl`` is the
shipped client's own pycurl call without the SigV4 headers, so signing's cost is the difference on the same
transport. Every client percent-encodes the ids as boto3 does (real ids hold ``=``, ``+``, ``/``): urllib3
re-checks a path holding ``%`` byte by byte (its cost: bench/README.md), so the floors send the same path.
Rounds are interleaved.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from botocore.utils import percent_encode

from bench.boto3_client import boto3_management_client
from bench.report import Column, median, records_table, table
from bench.urllib3_client import Urllib3ManagementApiClient
from local_stack.testing import FakeManagementApiProcess
from shared.management_api import ManagementApiClient
from shared.sender import management_client

LEAN = "ours: SigV4 + libcurl (shipped)"
URLLIB3 = "before libcurl: SigV4 + urllib3"
RAW_URLLIB3 = "raw urllib3, unsigned"
UNSIGNED_SAME_CALL = "unsigned urllib3, same urlopen call"
UNSIGNED_CURL = "unsigned libcurl, shipped pycurl call"
FANOUT_URLLIB3_FLOOR = "floor: unsigned urllib3 + threads (Sender)"
FANOUT_CURL_FLOOR = "floor: unsigned libcurl + threads (Sender)"
DATA = b'{"action": "message", "room_id": "general", "user_id": "alice", "message": "hello room"}'


@dataclass(frozen=True, kw_only=True)
class PostCostConfig:
    posts: int = 500
    rounds: int = 3
    profile_posts: int = 300
    fanout_posts: int = 1000
    fanout_pool: int = 32
    fanout_latency_ms: float = 20.0
    fanout_rounds: int = 5
    seed_loop_posts: int = 100  # the seed's loop takes N x L: measured on a sample


def _clients(endpoint: str) -> dict[str, Callable[[str], Any]]:
    import urllib3

    boto = boto3_management_client(endpoint, pool_size=1)
    lean = management_client(endpoint, pool_size=1)
    before = Urllib3ManagementApiClient(endpoint, pool_size=1)
    raw = urllib3.PoolManager(maxsize=1, retries=False)
    same_call = UnsignedClient(endpoint, pool_size=1)
    curl = UnsignedCurlClient(endpoint, pool_size=1)
    return {
        "boto3": lambda cid: boto.post_to_connection(ConnectionId=cid, Data=DATA),
        LEAN: lambda cid: lean.post_to_connection(ConnectionId=cid, Data=DATA),
        URLLIB3: lambda cid: before.post_to_connection(ConnectionId=cid, Data=DATA),
        RAW_URLLIB3: lambda cid: raw.request(
            "POST", f"{endpoint}/@connections/{percent_encode(cid)}", body=DATA, retries=False
        ),
        UNSIGNED_SAME_CALL: lambda cid: same_call.post_to_connection(ConnectionId=cid, Data=DATA),
        UNSIGNED_CURL: lambda cid: curl.post_to_connection(ConnectionId=cid, Data=DATA),
    }


class _Unsigned:
    """``post_to_connection`` without the SigV4 headers, on a client's own ``_send`` (its transport)."""

    _path: str  # annotations only (the client class after this one in the MRO has them)
    _send: Callable[[str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        status, _headers, _body = self._send(
            f"{self._path}/@connections/{percent_encode(ConnectionId)}", {}, Data
        )
        if status != 200:
            raise RuntimeError(f"fake API answered {status}")


class UnsignedCurlClient(_Unsigned, ManagementApiClient):
    """The shipped client's pycurl call (same handle pool, options and Host header) without the SigV4
    headers: the libcurl floor, so what signing costs on the shipped transport is the difference."""


class UnsignedClient(_Unsigned, Urllib3ManagementApiClient):
    """The urllib3 client's ``urlopen`` call without SigV4 (bench/urllib3_client.py; what signing cost on
    urllib3 is the difference)."""


def _fanout_peers(api: Any, config: PostCostConfig) -> list[dict[str, Any]]:
    """CPU (this process) and wall time per post of each peer fanning out to the same ids."""
    from bench.boto3_client import boto3_factory
    from shared.sender import Sender

    n, pool = config.fanout_posts, config.fanout_pool
    ids = [f"f{i:014d}=" for i in range(n)]
    endpoint = api.endpoint_url

    def sender(factory: Any = None) -> Callable[[], Any]:
        s = Sender(pool_size=pool, on_gone=lambda cid: None, client_factory=factory)
        return lambda: s.broadcast(endpoint, ids, DATA)

    seed = boto3_management_client(endpoint, pool_size=1)

    def seed_loop() -> None:
        for cid in ids[: config.seed_loop_posts]:
            seed.post_to_connection(ConnectionId=cid, Data=DATA)

    peers: dict[str, tuple[Callable[[], Any], int]] = {
        "seed loop (boto3, sequential)": (seed_loop, min(n, config.seed_loop_posts)),
        "boto3 + threads (Sender)": (sender(boto3_factory(pool)), n),
        "asyncio + aiohttp + botocore SigV4": (lambda: asyncio_fanout(endpoint, ids, pool), n),
        "before libcurl: SigV4 + urllib3 + threads (Sender)": (
            sender(lambda url: Urllib3ManagementApiClient(url, pool_size=pool)),
            n,
        ),
        FANOUT_URLLIB3_FLOOR: (sender(lambda url: UnsignedClient(url, pool_size=pool)), n),
        FANOUT_CURL_FLOOR: (sender(lambda url: UnsignedCurlClient(url, pool_size=pool)), n),
        "ours: Sender as shipped (SigV4 + libcurl)": (sender(), n),
    }
    for run, _ in peers.values():  # warm: clients, threads and kept-alive connections exist before timing
        run()
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(config.fanout_rounds):
        for name, (run, posts) in peers.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            samples[name].append(
                ((time.perf_counter() - start) / posts, (time.process_time() - start_cpu) / posts)
            )
    floor = median([c for _, c in samples[FANOUT_URLLIB3_FLOOR]])
    curl_floor = median([c for _, c in samples[FANOUT_CURL_FLOOR]])
    rows = []
    for name, (_, posts) in peers.items():
        cpu = median([c for _, c in samples[name]])
        wall = median([w for w, _ in samples[name]])
        rows.append(
            {
                "client": name,
                "posts": posts,
                "wall_ms_per_post": wall * 1000,
                "wall_s_for_n": wall * n,
                "cpu_ms_per_post": cpu * 1000,
                "cpu_vs_floor": cpu / floor,
                "cpu_vs_curl_floor": cpu / curl_floor,
            }
        )
    return rows


def asyncio_fanout(endpoint: str, ids: list[str], pool: int) -> None:
    """The asyncio reference: one aiohttp session (pool connections), botocore's signer per request."""
    import asyncio

    import aiohttp
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    region = session.get_config_variable("region")

    async def main() -> None:
        limit = asyncio.Semaphore(pool)
        connector = aiohttp.TCPConnector(limit=pool)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(cid: str) -> None:
                url = f"{endpoint}/@connections/{percent_encode(cid)}"
                request = AWSRequest(method="POST", url=url, data=DATA)
                SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
                async with limit, http.post(url, data=DATA, headers=dict(request.headers.items())) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"fake API answered {answer.status}")

            await asyncio.gather(*(post(cid) for cid in ids))

    asyncio.run(main())


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
    profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: libcurl waits for the answer in C
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
    with FakeManagementApiProcess(latency=0.0) as api:
        clients = _clients(api.endpoint_url)
        for post in clients.values():
            post("warmup=")
        samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for _ in range(config.rounds):  # interleaved, so load changes hit every client alike
            for name, post in clients.items():
                samples[name].append(_measure(post, config.posts))
        boto_cpu = median([cpu for _, cpu in samples["boto3"]])
        floor_cpu = median([cpu for _, cpu in samples[RAW_URLLIB3]])
        curl_floor_cpu = median([cpu for _, cpu in samples[UNSIGNED_CURL]])
        for name, values in samples.items():
            cpu = median([c for _, c in values])
            out["rows"].append(
                {
                    "client": name,
                    "wall_ms_per_post": median([w for w, _ in values]) * 1000,
                    "cpu_ms_per_post": cpu * 1000,
                    "cpu_vs_boto3": cpu / boto_cpu,
                    "cpu_vs_floor": cpu / floor_cpu,
                    "cpu_vs_curl_floor": cpu / curl_floor_cpu,
                    "max_posts_per_s_one_core": 1 / cpu,
                }
            )
        if config.fanout_posts:
            with FakeManagementApiProcess(latency=config.fanout_latency_ms / 1000) as slow_api:
                out["fanout"] = _fanout_peers(slow_api, config)
        if config.profile_posts:
            out["profile"] = profile_client(
                management_client(api.endpoint_url, pool_size=1), config.profile_posts
            )
            out["profile_urllib3"] = profile_client(
                Urllib3ManagementApiClient(api.endpoint_url, pool_size=1), config.profile_posts
            )
            out["profile_boto3"] = profile_client(
                boto3_management_client(api.endpoint_url, pool_size=1), config.profile_posts
            )
    return out


SEQUENTIAL_NOTE = (
    f"vs raw urllib3 = CPU / '{RAW_URLLIB3}' (the target's floor: ours within 1.15x); vs unsigned libcurl = "
    f"CPU / '{UNSIGNED_CURL}' (what signing costs on the shipped transport)"
)
FANOUT_NOTE = (
    f"CPU vs urllib3 floor = CPU / '{FANOUT_URLLIB3_FLOOR}' (the target's floor); CPU vs libcurl floor = "
    f"CPU / '{FANOUT_CURL_FLOOR}' (signing's cost on the shipped transport)"
)


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    title = (
        f"CPU per post_to_connection, sequential, no latency ({cfg['posts']} posts x {cfg['rounds']} "
        "rounds, median)"
    )
    columns: list[Column] = [
        ("client", "client"),
        ("wall ms/post", "wall_ms_per_post"),
        ("CPU ms/post", "cpu_ms_per_post"),
        ("CPU vs boto3", "cpu_vs_boto3"),
        ("vs raw urllib3", lambda r: r.get("cpu_vs_floor", float("nan"))),
        ("vs unsigned libcurl", lambda r: r.get("cpu_vs_curl_floor", float("nan"))),
        ("posts/s per core", "max_posts_per_s_one_core"),
    ]
    parts = [records_table(title, columns, result["rows"], digits=3) + "\n" + SEQUENTIAL_NOTE]
    if result.get("fanout"):
        title = (
            f"peers in a fan-out: N = {cfg['fanout_posts']:,}, pool {cfg['fanout_pool']}, L = "
            f"{cfg['fanout_latency_ms']:g} ms, CPU of this process per post (median of "
            f"{cfg['fanout_rounds']}, interleaved; the seed loop on {cfg['seed_loop_posts']} posts, its "
            "N-post time extrapolated)"
        )
        columns = [
            ("client", "client"),
            ("posts", "posts"),
            ("wall ms/post", "wall_ms_per_post"),
            ("wall s for N", "wall_s_for_n"),
            ("CPU ms/post", "cpu_ms_per_post"),
            ("CPU vs urllib3 floor", "cpu_vs_floor"),
            ("CPU vs libcurl floor", lambda r: r.get("cpu_vs_curl_floor", float("nan"))),
        ]
        parts.append(records_table(title, columns, result["fanout"], digits=3) + "\n" + FANOUT_NOTE)
    profiles = (
        ("profile", "the shipped (libcurl) client's"),
        ("profile_urllib3", "the urllib3 client's (before libcurl)"),
        ("profile_boto3", "boto3's"),
    )
    for key, name in profiles:
        profile = result.get(key)
        if profile:
            parts.append(
                table(
                    f"where {name} post_to_connection spends CPU (cProfile on this thread's CPU clock, "
                    f"{profile['posts']} posts; profiled total {profile['total_ms_per_post']:.3f} ms/post, "
                    "the profiler's own cost included: compare shares)",
                    ["area (self time)", "ms/post"],
                    list(profile["by_area_ms_per_post"].items()),
                    digits=3,
                )
            )
    return "\n\n".join(parts)
