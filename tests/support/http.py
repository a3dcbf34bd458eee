"""A local HTTP endpoint on 127.0.0.1 that answers every GET as told (JWKS endpoints, good or misbehaving)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Endpoint:
    """A local HTTP endpoint answering every GET with ``answer(path)``: (status, body, delay seconds)."""

    url: str
    seen: list[str] = field(default_factory=list)


@contextmanager
def http_endpoint(
    answer: Callable[[str], tuple[int, bytes, float]], path: str = "/.well-known/jwks.json"
) -> Iterator[Endpoint]:
    """Serve ``answer`` until exit; ``url`` points at ``path``, ``seen`` lists the request paths."""
    endpoint = Endpoint(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            endpoint.seen.append(self.path)
            status, body, delay = answer(self.path)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up first
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
