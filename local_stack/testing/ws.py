"""WebSocket clients for tests against a running stack (they need ``websockets``: the ``testing`` extra).

:class:`ChatClient` (asyncio) keeps every frame it receives, in order; a request waits for its answer.
:mod:`local_stack.testing.raw_ws` does what real clients never do (unmasked frames, dropped TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from ..config import DEFAULT_JWT_SECRET
from ..tokens import make_token

__all__ = ["ChatClient", "client_url", "merged", "until"]


def client_url(ws_url: str, user: str, room: str, *, secret: str = DEFAULT_JWT_SECRET) -> str:
    """``ws_url`` with ``user``'s token (signed with ``secret``) and ``room_id=room``."""
    return f"{ws_url}?token={make_token(secret, user)[0]}&room_id={room}"


async def until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """Wait until ``predicate()`` is true, at most ``timeout`` s; its last value, as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


def merged(*sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a client shows: each message_id once, in message_id order."""
    by_id = {m["message_id"]: m for source in sources for m in source}
    return [by_id[k] for k in sorted(by_id)]


@dataclass
class ChatClient:
    """A chat connection that records every frame it receives (``presence`` ones left out when
    ``ignore_presence``). Open it with :meth:`open` (a URL) or :meth:`join` (a user and a room)."""

    ws: ClientConnection
    name: str = ""
    ignore_presence: bool = False
    frames: list[dict[str, Any]] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)  # chat message text -> times it arrived
    errors: Counter[str] = field(default_factory=Counter)  # error code, or "gateway: <its message>"
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, name: str = "", *, ignore_presence: bool = False, open_timeout: float = 60
    ) -> ChatClient:
        ws = await connect(
            url, open_timeout=open_timeout, close_timeout=5, max_queue=None, ping_interval=None
        )
        client = cls(ws=ws, name=name, ignore_presence=ignore_presence)
        client.reader = asyncio.get_running_loop().create_task(client._read())
        return client

    @classmethod
    async def join(
        cls, ws_url: str, user: str, room: str, *, secret: str = DEFAULT_JWT_SECRET, **kwargs: Any
    ) -> ChatClient:
        return await cls.open(client_url(ws_url, user, room, secret=secret), user, **kwargs)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = json.loads(raw)
                action = frame.get("action")
                if self.ignore_presence and action == "presence":
                    continue
                self.frames.append(frame)
                if action == "message":
                    self.received[frame["message"]] += 1
                elif action == "error":
                    self.errors[str(frame.get("code"))] += 1
                elif action is None:  # API Gateway's own frames
                    self.errors[f"gateway: {frame.get('message')}"] += 1

    def of(self, action: str) -> list[dict[str, Any]]:
        """The frames received with this ``action`` (``message``, ``ack``, ``presence``, ``error``...)."""
        return [f for f in self.frames if f.get("action") == action]

    @property
    def gateway_errors(self) -> list[str]:
        """API Gateway's own frames (no ``action``): "Internal server error", "Endpoint request timed out"."""
        return [str(f.get("message")) for f in self.frames if "action" not in f]

    async def send(self, frame: dict[str, Any] | str) -> None:
        """Send a frame (a dict, as JSON) or a chat message text (a ``sendMessage``)."""
        if isinstance(frame, str):
            frame = {"action": "sendMessage", "message": frame}
        await self.ws.send(json.dumps(frame))

    async def request(self, frame: dict[str, Any], answer: str, timeout: float = 20) -> dict[str, Any]:
        """Send ``frame`` and wait for one more frame of action ``answer``; that frame."""
        before = len(self.of(answer))
        await self.send(frame)
        if not await until(lambda: len(self.of(answer)) > before, timeout):
            raise AssertionError(f"no {answer!r} within {timeout} s for {frame}: got {self.frames}")
        return self.of(answer)[before]

    async def send_acked(self, text: str, client_msg_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """Send a chat message and wait for its ack (frames of one connection run concurrently, as on
        API Gateway: waiting for each ack is what keeps messages in order)."""
        frame = {"action": "sendMessage", "message": text, **fields}
        if client_msg_id:
            frame["client_msg_id"] = client_msg_id
        return await self.request(frame, "ack")

    async def history(self, **fields: Any) -> dict[str, Any]:
        return await self.request({"action": "getHistory", **fields}, "history")

    def abort(self) -> None:
        """Vanish without a close frame (a killed browser tab, a dropped network)."""
        self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
