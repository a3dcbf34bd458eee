"""A fast fake API Gateway management API for benchmarks: aiohttp in its own process.

tests/support/management_api.py (ThreadingHTTPServer, one thread per connection) is right for tests but
would share the benchmark's GIL and CPU; this one runs in a child process, holds every post for
``latency`` seconds with ``asyncio.sleep`` (no thread per request), keeps connections alive like API
Gateway, and answers 200 for every connection id (or 410 for ids starting with ``gone-``).

``GET /_stats`` returns ``{"posts", "bytes", "in_flight", "max_in_flight", "connections", "distinct"}``
(``distinct``: connection ids posted to at least once, so posts - distinct are repeats);
``POST /_reset`` zeroes them. Run alone: ``python -m bench.fake_api --latency-ms 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.request import Request, urlopen

from aiohttp import web

from bench.env import ROOT
from bench.proc import first_line, stop_process


@dataclass
class Stats:
    posts: int = 0
    bytes: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    peers: set[Any] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        return {
            "posts": self.posts,
            "bytes": self.bytes,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "connections": len(self.peers),
            "distinct": len(self.ids),
        }


def make_app(stage: str, latency: float) -> web.Application:
    stats = Stats()

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        stats.posts += 1
        stats.bytes += len(body)
        stats.ids.add(request.match_info["cid"])
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        if request.transport is not None:
            stats.peers.add(request.transport.get_extra_info("peername"))
        try:
            if latency:
                await asyncio.sleep(latency)
        finally:
            stats.in_flight -= 1
        if request.match_info["cid"].startswith("gone-"):
            return web.json_response(
                {"message": None}, status=410, headers={"x-amzn-ErrorType": "GoneException"}
            )
        return web.json_response({})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats.as_dict())

    async def reset(request: web.Request) -> web.Response:
        stats.posts = stats.bytes = stats.max_in_flight = 0
        stats.peers.clear()
        stats.ids.clear()
        return web.json_response(stats.as_dict())

    app = web.Application()
    app.router.add_post(f"/{stage}/@connections/{{cid}}", post)
    app.router.add_get("/_stats", get_stats)
    app.router.add_post("/_reset", reset)
    return app


async def _serve(stage: str, latency: float) -> None:
    runner = web.AppRunner(make_app(stage, latency), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    # Bounded: the parent closes stdin (or dies) and the server stops.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


class FakeApiProcess:
    """``with FakeApiProcess(latency=0.02) as api:`` starts the fake in a child process."""

    def __init__(self, *, latency: float, stage: str = "prod") -> None:
        self.latency = latency
        self.stage = stage
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    @property
    def endpoint_url(self) -> str:
        return f"{self.base}/{self.stage}"

    def __enter__(self) -> FakeApiProcess:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fake_api",
                "--latency-ms",
                str(self.latency * 1000),
                "--stage",
                self.stage,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = first_line(self._proc, 30)
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"fake management API did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        stop_process(self._proc)

    def stats(self) -> dict[str, int]:
        with urlopen(f"{self.base}/_stats", timeout=10) as response:
            return dict(json.loads(response.read()))

    def reset(self) -> dict[str, int]:
        with urlopen(Request(f"{self.base}/_reset", method="POST", data=b""), timeout=10) as response:
            return dict(json.loads(response.read()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_api", description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--stage", default="prod")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.stage, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
