"""A fake API Gateway management API over real HTTP, so boto3 parses its answers as it parses AWS's.

Each connection id answers 200 while it is live, 410 (``x-amzn-ErrorType: GoneException``) once gone or
when unknown. A script of statuses per id can be queued (e.g. ``[429, 429, 200]``). Every post is held for
``latency`` seconds; ``max_in_flight`` counts how many posts were being served at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

ERROR_TYPES = {
    403: "ForbiddenException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerError",
}


@dataclass
class FakeManagementApi:
    stage: str = "prod"
    latency: float = 0.0
    live: set[str] = field(default_factory=set)
    scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.stage}"

    def frames_to(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(data) for cid, data in self.delivered if cid == connection_id]

    def reset(self) -> None:
        """Forget what was delivered and attempted (the live ids and the status scripts stay)."""
        with self._lock:
            self.delivered.clear()
            self.attempts.clear()

    def start(self) -> FakeManagementApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like API Gateway

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                connection_id = self._connection_id()
                with api._lock:
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                    api.attempts[connection_id] += 1
                    script = api.scripts.get(connection_id)
                    status = script.pop(0) if script else (200 if connection_id in api.live else 410)
                try:
                    if api.latency:
                        time.sleep(api.latency)
                    if status == 200:
                        with api._lock:
                            api.delivered.append((connection_id, body))
                    self._answer(status)
                finally:
                    with api._lock:
                        api.in_flight -= 1

            def _connection_id(self) -> str:
                prefix = f"/{api.stage}/@connections/"
                if not self.path.startswith(prefix):
                    return ""
                return unquote(self.path[len(prefix) :])

            def _answer(self, status: int) -> None:
                payload = b"{}" if status == 200 else json.dumps({"message": None}).encode()
                self.send_response(status)
                if status != 200:
                    self.send_header("x-amzn-ErrorType", ERROR_TYPES.get(status, "UnknownError"))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
