"""The local stack for the stack-level families: started as its own process (``python -m local_stack up``),
so the gateway's memory is its own and the workers are its children; plus WebSocket clients and table reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

from local_stack.config import DEFAULT_JWT_SECRET, REPO_ROOT
from local_stack.tokens import make_token
from tests.support.records import table_items


def token(user: str, room: str | None = None) -> str:
    return make_token(DEFAULT_JWT_SECRET, user, room=room)[0]


def table_ids(client: Any) -> set[str]:
    return {item["connection_id"]["S"] for item in table_items(client)}


@dataclass
class StackProcess:
    """``python -m local_stack up`` on free ports, its output in a file (function logs are verbose)."""

    log_path: Path
    workers: int = 4
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    ws_url: str = ""
    dynamodb_endpoint: str = ""

    def start(self, timeout: float = 90.0) -> StackProcess:
        env = {**os.environ, "WS_PORT": "0", "WEB_PORT": "0", "PYTHONUNBUFFERED": "1", **self.env}
        args = [sys.executable, "-m", "local_stack", "up", "--no-reload", "--workers", str(self.workers)]
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [*args, *self.extra_args], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            ws = re.search(r"WebSocket URL\s*:\s*(\S+)", text)
            db = re.search(r"DynamoDB\s*:\s*(\S+)", text)
            if ws and db:
                self.ws_url, self.dynamodb_endpoint = ws.group(1), db.group(1)
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"local stack exited {self.process.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"local stack not ready within {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def memory(self) -> tuple[int, int, int]:
        """(gateway process RSS, summed RSS of its worker processes, number of workers), in bytes."""
        assert self.process is not None
        gateway = psutil.Process(self.process.pid)
        workers = 0
        count = 0
        for child in gateway.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                workers += child.memory_info().rss
                count += 1
        return gateway.memory_info().rss, workers, count

    @property
    def callback_url(self) -> str:
        return self.ws_url.replace("ws://", "http://", 1)

    def worker_environments(self) -> list[dict[str, str]]:
        assert self.process is not None
        return [child.environ() for child in psutil.Process(self.process.pid).children(recursive=True)]

    def url(self, user: str, room: str) -> str:
        return f"{self.ws_url}?token={token(user)}&room_id={room}"


@dataclass
class Client:
    """A WebSocket client that records every chat message it receives, by text."""

    name: str
    ws: ClientConnection
    received: Counter[str] = field(default_factory=Counter)
    message_ids: Counter[tuple[str, str]] = field(default_factory=Counter)  # (text, message_id)
    errors: Counter[str] = field(default_factory=Counter)
    presence: Counter[tuple[Any, Any]] = field(default_factory=Counter)  # (user_id, state)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, name: str) -> Client:
        ws = await connect(url, open_timeout=60, close_timeout=5, max_queue=None, ping_interval=None)
        client = cls(name=name, ws=ws)
        client.reader = asyncio.get_running_loop().create_task(client._read())
        return client

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("action") == "message":
                    self.received[frame["message"]] += 1
                    self.message_ids[frame["message"], frame.get("message_id", "")] += 1
                elif frame.get("action") == "error":  # a contract error frame
                    self.errors[str(frame.get("code"))] += 1
                elif frame.get("action") == "presence":  # members coming and going (docs/rooms.md)
                    self.presence[frame.get("user_id"), frame.get("state")] += 1
                else:  # API Gateway's own frames: "Internal server error", "Endpoint request timed out"
                    self.errors[f"gateway: {frame.get('message')}"] += 1

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps({"action": "sendMessage", "message": text}))

    def abort(self) -> None:
        """Vanish without a close frame (a killed browser tab, a dropped network)."""
        self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
