"""Local HS256 tokens with the claims of docs/protocol.md section 2."""

from __future__ import annotations

import time
from typing import Any

import jwt

__all__ = ["make_token"]


def make_token(
    secret: str,
    user: str,
    *,
    name: str | None = None,
    room: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> tuple[str, int]:
    """(token, expires_at): claims ``sub``, ``name``, ``iat``, ``exp`` and ``rooms: [room]`` only when
    ``room`` is given (absent = any room)."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(ttl_s)
    claims: dict[str, Any] = {"sub": user, "name": name or user, "iat": issued, "exp": expires}
    if room:
        claims["rooms"] = [room]
    return jwt.encode(claims, secret, algorithm="HS256"), expires
