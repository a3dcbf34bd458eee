"""A fake API Gateway management API (``POST @connections/{id}``) over real HTTP, so a client parses its
answers as it parses AWS's: aiohttp, keep-alive like API Gateway, posts held with ``asyncio.sleep``.

* In this process: ``FakeManagementApi().start()`` serves from a thread of its own (tests reading what
  was posted); ``stop()`` ends it.
* In a child process: ``FakeManagementApiProcess(latency=0.02)`` (benchmarks: the fake's CPU and GIL are
  not the measured client's); ``stats()`` and ``reset()`` read and zero its counters over HTTP.

A connection id answers 200 while it is live (in ``live``, or any id not starting with ``gone-`` when
``all_live``), else 410 with ``x-amzn-ErrorType: GoneException``. ``scripts[id]`` queues what the next
posts to that id get, one entry per attempt: a status (``429``, ``500``, ``200``, ...), ``"hang"`` (held
``hang_seconds`` and dropped unanswered) or ``"reset"`` (dropped at once). Every post is held
``latency`` seconds (``latencies[id]`` for one id). What was delivered, the attempts per id, how many
posts were served at once (``max_in_flight``), the client connections and every request as it arrived
(``seen``) are recorded. ``answer = (status, headers, body)`` answers every post with exactly that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.request import Request, urlopen

from aiohttp import web

from ..config import REPO_ROOT
from .process import read_ready_line, stop_process

__all__ = ["ERROR_TYPES", "FakeManagementApi", "FakeManagementApiProcess", "Seen"]

ERROR_TYPES = {
    403: "ForbiddenException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerError",
    503: "ServiceUnavailableException",
}


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: method, raw path (percent-encoding kept), headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeManagementApi:
    stage: str = "prod"
    latency: float = 0.0
    latencies: dict[str, float] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    all_live: bool = False
    scripts: dict[str, list[int | str]] = field(default_factory=dict)
    hang_seconds: float = 2.0
    answer: tuple[int, dict[str, str], bytes] | None = None  # (status, headers, body) for every post
    seen: list[Seen] = field(default_factory=list)
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    posts: int = 0
    bytes: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    peers: set[Any] = field(default_factory=set)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _runner: web.AppRunner | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        """The ``endpoint_url`` / ``WEBSOCKET_CALLBACK_URL`` of this API (``http://127.0.0.1:PORT/STAGE``)."""
        assert self.port, "start() first"
        return f"http://127.0.0.1:{self.port}/{self.stage}"

    def is_live(self, connection_id: str) -> bool:
        return connection_id in self.live or (self.all_live and not connection_id.startswith("gone-"))

    def frames_to(self, connection_id: str) -> list[dict[str, Any]]:
        """Every frame delivered to ``connection_id``, parsed, in order."""
        with self._lock:
            return [json.loads(data) for cid, data in self.delivered if cid == connection_id]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "posts": self.posts,
                "bytes": self.bytes,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "connections": len(self.peers),
                "distinct": len(self.attempts),  # ids posted to at least once: posts - distinct are repeats
            }

    def reset(self) -> dict[str, int]:
        """Forget what was delivered, attempted and counted (the live ids and the scripts stay)."""
        with self._lock:
            self.delivered.clear()
            self.attempts.clear()
            self.seen.clear()
            self.posts = self.bytes = self.max_in_flight = 0
            self.peers.clear()
        return self.stats()

    def app(self, *, control: bool = False) -> web.Application:
        """The aiohttp application; ``control`` adds ``GET /_stats`` and ``POST /_reset``."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(f"/{self.stage}/@connections/{{cid}}", self._post)
        if control:

            async def stats(request: web.Request) -> web.Response:
                return web.json_response(self.stats())

            async def reset(request: web.Request) -> web.Response:
                return web.json_response(self.reset())

            app.router.add_get("/_stats", stats)
            app.router.add_post("/_reset", reset)
        return app

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        connection_id = request.match_info["cid"]
        with self._lock:
            self.posts += 1
            self.bytes += len(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.attempts[connection_id] += 1
            self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
            if request.transport is not None:
                self.peers.add(request.transport.get_extra_info("peername"))
            script = self.scripts.get(connection_id)
            step = script.pop(0) if script else (200 if self.is_live(connection_id) else 410)
            delay = self.latencies.get(connection_id, self.latency)
        try:
            if step in ("hang", "reset"):
                if step == "hang":
                    await asyncio.sleep(self.hang_seconds)
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError(f"dropped a post to {connection_id} ({step})")
            if delay:
                await asyncio.sleep(delay)
            if self.answer is not None:
                status, headers, payload = self.answer
                return web.Response(status=status, headers=headers, body=payload)
            status = int(step)
            if status == 200:
                with self._lock:
                    self.delivered.append((connection_id, body))
                return web.json_response({})
            return web.json_response(
                {"message": None},
                status=status,
                headers={"x-amzn-ErrorType": ERROR_TYPES.get(status, "UnknownError")},
            )
        finally:
            with self._lock:
                self.in_flight -= 1

    def start(self) -> FakeManagementApi:
        """Serve from a thread of this process, on a free port of 127.0.0.1."""
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="fake-management-api", daemon=True).start()
        self._loop = loop
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(30)
        return self

    async def _serve(self, port: int = 0, *, control: bool = False) -> int:
        self._runner = web.AppRunner(self.app(control=control), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=4096)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)

    def __enter__(self) -> FakeManagementApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeManagementApiProcess:
    """``with FakeManagementApiProcess(latency=0.02) as api:`` runs :class:`FakeManagementApi` (every id
    live but ``gone-*``) in a child process; ``api.endpoint_url``, ``api.stats()``, ``api.reset()``."""

    def __init__(self, *, latency: float = 0.0, stage: str = "prod", start_timeout_s: float = 30.0) -> None:
        self.latency = latency
        self.stage = stage
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"{self.base}/{self.stage}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def __enter__(self) -> FakeManagementApiProcess:
        command = [sys.executable, "-m", "local_stack.testing", "fake-api"]
        command += ["--latency-ms", str(self.latency * 1000), "--stage", self.stage]
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            ready = read_ready_line(self.proc, self.start_timeout_s, what="the fake management API")
        except BaseException:
            self.__exit__()
            raise
        self.port = int(ready["port"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def stats(self) -> dict[str, int]:
        with urlopen(f"{self.base}/_stats", timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return dict(json.loads(response.read()))

    def reset(self) -> dict[str, int]:
        request = Request(f"{self.base}/_reset", method="POST", data=b"")  # noqa: S310 - 127.0.0.1
        with urlopen(request, timeout=10) as response:  # noqa: S310
            return dict(json.loads(response.read()))


async def _serve_until_stdin_closes(api: FakeManagementApi) -> None:
    port = await api._serve(control=True)
    print(json.dumps({"event": "ready", "port": port, "endpoint_url": api.endpoint_url}), flush=True)
    # Bounded: the parent closes stdin (or dies) and the server stops.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    assert api._runner is not None
    await api._runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_stack.testing fake-api", description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--stage", default="prod")
    args = parser.parse_args(argv)
    api = FakeManagementApi(stage=args.stage, latency=args.latency_ms / 1000, all_live=True)
    asyncio.run(_serve_until_stdin_closes(api))
