"""The floor: a bare ``websockets`` server that broadcasts each ``sendMessage`` frame to its room, with
the frame send_message would build, and nothing else (no auth, no database, no Lambda, no HTTP hop).

Run alone: ``python -m bench.floor_server`` prints the kit's ready line (``{"event": "ready", "port": n}``)
and stops when its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.env import ROOT
from local_stack.testing import read_ready_line, stop_process

ROOMS: dict[str, set[ServerConnection]] = defaultdict(set)


async def _handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    query = parse_qs(urlsplit(ws.request.path).query)
    room = query.get("room_id", ["general"])[0]
    user = query.get("user", ["anonymous"])[0]
    ROOMS[room].add(ws)
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("action") != "sendMessage":
                continue
            out = json.dumps(
                {
                    "action": "message",
                    "room_id": room,
                    "user_id": user,
                    "message": frame.get("message", ""),
                    "message_id": uuid.uuid4().hex,
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                separators=(",", ":"),
            )
            broadcast(ROOMS[room], out)
    finally:
        ROOMS[room].discard(ws)


async def _serve() -> None:
    async with serve(_handler, "127.0.0.1", 0, ping_interval=None, backlog=1024) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"event": "ready", "port": port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class FloorProcess:
    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/floor"

    def __enter__(self) -> FloorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floor_server"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            self.port = int(read_ready_line(self.proc, 30, what="the floor server")["port"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)


if __name__ == "__main__":
    asyncio.run(_serve())
