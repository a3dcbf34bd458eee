"""A WebSocket client on a bare socket, for what real clients never do: unmasked frames, a TCP connection
dropped without a close frame, a reader that stops reading, a handshake sent by halves."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def handshake_request(url: str) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def frame(payload: bytes, *, opcode: int = 0x1, masked: bool = True) -> bytes:
    """One final frame as a client sends it (``masked=False`` breaks RFC 6455 on purpose)."""
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@dataclass
class RawClient:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    def open(cls, url: str, *, rcvbuf: int | None = None, timeout: float = 15.0) -> RawClient:
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        sock.sendall(handshake_request(url))
        client = cls(sock)
        head = client._read_until(b"\r\n\r\n", timeout)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            sock.close()
            raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        return client

    def _read_until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def send_text(self, text: str, *, masked: bool = True) -> None:
        self.sock.sendall(frame(text.encode(), masked=masked))

    def recv_frame(self, timeout: float = 10.0) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next server frame; None when the TCP connection ends first."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, length, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return opcode, payload

    def frames_until_closed(self, timeout: float = 10.0) -> tuple[list[bytes], int | None]:
        """Every text/binary payload until the server's close frame (its code) or the end of TCP (None)."""
        payloads: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if got is None:
                return payloads, None
            opcode, payload = got
            if opcode == 0x8:
                return payloads, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if opcode in (0x1, 0x2):
                payloads.append(payload)
        return payloads, None

    def drop(self) -> None:
        """End the TCP connection with a reset and no close frame (a crashed client)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
