"""A JWKS endpoint served over real HTTP on 127.0.0.1, with an RSA key pair to sign tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.http import http_endpoint

KID = "test-key-1"


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
