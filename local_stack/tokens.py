"""Local HS256 tokens with the claims of docs/protocol.md section 2 (the only token maker: the stack's
``/dev/token``, ``token`` command and ``local_stack.testing.make_token`` all sign through it)."""

from __future__ import annotations

import time
from typing import Any

import jwt

__all__ = ["make_token"]


def make_token(
    secret: str,
    user: Any,
    *,
    name: str | None = None,
    room: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
    algorithm: str = "HS256",
    **claims: Any,
) -> tuple[str, int]:
    """(token, expires_at): claims ``sub``, ``name``, ``iat``, ``exp`` and ``rooms: [room]`` only when
    ``room`` is given (absent = any room). A ``user`` of None (no ``sub``) or not a string (a broken
    token) gets no ``name`` unless given; ``claims`` are added last (and win)."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(ttl_s)
    payload: dict[str, Any] = {"iat": issued, "exp": expires}
    if user is not None:
        payload["sub"] = user
    if name or isinstance(user, str):
        payload["name"] = name or user
    if room:
        payload["rooms"] = [room]
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm), expires
