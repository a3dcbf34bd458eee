"""A minimal Lambda Runtime API (what ``awslambdaric`` speaks) that timestamps every step.

One server per execution environment: events are queued with :meth:`invoke`, which returns when the
function answered. Times are ``time.perf_counter()`` values of this process.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    queued_at: float
    delivered_at: float = 0.0
    answered_at: float = 0.0
    response: Any = None
    error: Any = None
    done: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the runtime client's socket is reset when its process is stopped


class RuntimeApi:
    def __init__(self, *, function_name: str = "bench", timeout_s: float = 30.0) -> None:
        self.function_name = function_name
        self.timeout_s = timeout_s
        self.first_next_at: float | None = None
        self.init_error: Any = None
        self.init_failed = threading.Event()
        self._queue: queue.Queue[Invocation] = queue.Queue()
        self._pending: dict[str, Invocation] = {}
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RuntimeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def submit(self, event: dict[str, Any]) -> Invocation:
        invocation = Invocation(str(uuid.uuid4()), event, time.perf_counter())
        self._pending[invocation.request_id] = invocation
        self._queue.put(invocation)
        return invocation

    def invoke(self, event: dict[str, Any], *, timeout_s: float | None = None) -> Invocation:
        invocation = self.submit(event)
        self.wait(invocation, timeout_s=timeout_s)
        return invocation

    def wait(self, invocation: Invocation, *, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while not invocation.done.wait(0.05):
            if self.init_failed.is_set():
                raise RuntimeError(f"the function failed to initialise: {self.init_error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to invocation {invocation.request_id}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle + the client's delayed
            # ACK add ~40 ms to every answer.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, b"{}")
                    return
                if api.first_next_at is None:
                    api.first_next_at = time.perf_counter()
                while not api._stopping.is_set():
                    try:
                        invocation = api._queue.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    invocation.delivered_at = time.perf_counter()
                    deadline_ms = int((time.time() + api.timeout_s) * 1000)
                    self._reply(
                        200,
                        json.dumps(invocation.event).encode(),
                        {
                            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                            "Lambda-Runtime-Invoked-Function-Arn": (
                                f"arn:aws:lambda:us-east-1:123456789012:function:{api.function_name}"
                            ),
                            "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                        },
                    )
                    return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = body.decode("utf-8", "replace")
                    api.init_failed.set()
                elif len(parts) == 3 and parts[0] == "invocation":
                    invocation = api._pending.pop(parts[1], None)
                    if invocation is not None:
                        invocation.answered_at = now
                        decoded = json.loads(body) if body else None
                        if parts[2] == "error":
                            invocation.error = decoded
                        else:
                            invocation.response = decoded
                        invocation.done.set()
                self._reply(202, b'{"status": "OK"}')

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
