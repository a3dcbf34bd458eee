"""Tokens for tests, signed with the secret the unit-test functions are configured with."""

from __future__ import annotations

import time
from typing import Any

import jwt

SECRET = "unit-test-secret-that-is-at-least-32-bytes"


def make_token(
    sub: Any = "alice",
    *,
    secret: str = SECRET,
    expires_in: int = 3600,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"exp": int(time.time()) + expires_in, "iat": int(time.time())}
    if sub is not None:
        payload["sub"] = sub
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm)
