"""Identity providers for tests: an RSA key pair that signs tokens, its JWKS served over real HTTP on
127.0.0.1, and :func:`http_endpoint`, a local endpoint answering every GET as told (good or misbehaving)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KID", "Endpoint", "RsaKey", "http_endpoint", "serve_jwks"]

KID = "test-key-1"


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


class RsaKey:
    def __init__(self, kid: str = KID) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg="RS256")
        return data

    def token(
        self,
        sub: Any = "alice",
        *,
        expires_in: int = 3600,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        payload = {"exp": int(time.time()) + expires_in, **claims}
        if sub is not None:
            payload["sub"] = sub
        return jwt.encode(
            payload, self.private, algorithm="RS256", headers={"kid": self.kid, **(headers or {})}
        )


@contextmanager
def serve_jwks(*keys: RsaKey, delay: float = 0.0) -> Iterator[tuple[str, list[str]]]:
    """Yields (url, request paths seen)."""
    body = json.dumps({"keys": [k.jwk() for k in keys]}).encode()
    with http_endpoint(lambda path: (200, body, delay)) as endpoint:
        yield endpoint.url, endpoint.seen
