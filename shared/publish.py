"""What a backend asks the publish function for (docs/fanout.md, "Publishing from a backend").

A Lambda Invoke payload, a JSON object::

    {"room_id": "general" | "to_user_id": "bob", "message": "text",
     "user_id": "system"?, "name": "Announcements"?, "client_msg_id": "..."?}

checked with the protocol's own validators. A bad payload raises :class:`~shared.protocol.FrameError`
whose message names the field; the function returns it as ``{"ok": false, "error": {...}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.protocol import (
    ErrorCode,
    FrameError,
    client_msg_id,
    is_user_text,
    is_valid_room_id,
    message_text,
    user_id_field,
)

# The sender of a published message when the payload names none: clients show it like any user id.
SYSTEM_USER_ID = "system"
FIELDS = frozenset({"room_id", "to_user_id", "message", "user_id", "name", "client_msg_id"})


@dataclass(frozen=True, kw_only=True)
class PublishRequest:
    room_id: str | None  # exactly one of room_id and to_user_id
    to_user_id: str | None
    text: str
    user_id: str
    name: str | None
    client_msg_id: str | None


def parse_publish(payload: Any, *, max_bytes: int) -> PublishRequest:
    """The request in an invoke payload (a decoded JSON value, or a JSON string of one)."""
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise FrameError(ErrorCode.INVALID_JSON, "the payload is not JSON") from None
    if not isinstance(payload, dict):
        raise FrameError(ErrorCode.INVALID_REQUEST, "the payload must be a JSON object")
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise FrameError(
            ErrorCode.INVALID_REQUEST,
            f'unknown field "{unknown[0]}": a payload has {", ".join(sorted(FIELDS))}',
        )
    has_room, has_user = payload.get("room_id") is not None, payload.get("to_user_id") is not None
    if has_room == has_user:
        raise FrameError(ErrorCode.INVALID_REQUEST, 'give exactly one of "room_id" and "to_user_id"')
    room_id = to_user_id = None
    if has_room:
        room_id = payload["room_id"]
        if not is_valid_room_id(room_id):
            raise FrameError(
                ErrorCode.INVALID_REQUEST, '"room_id" must be 1 to 64 characters of A-Z, a-z, 0-9, "_.:-"'
            )
    else:
        to_user_id = user_id_field(payload, "to_user_id")
    user_id = user_id_field(payload, "user_id") if payload.get("user_id") is not None else SYSTEM_USER_ID
    if to_user_id is not None and to_user_id == user_id:
        raise FrameError(ErrorCode.INVALID_REQUEST, '"to_user_id" must be another user than "user_id"')
    name = payload.get("name")
    if name is not None and not is_user_text(name):
        raise FrameError(
            ErrorCode.INVALID_REQUEST,
            '"name" must be 1 to 128 characters of UTF-8 text, no control characters',
        )
    text = message_text(payload, max_bytes=max_bytes)  # checks client_msg_id too
    return PublishRequest(
        room_id=room_id,
        to_user_id=to_user_id,
        text=text,
        user_id=user_id,
        name=name,
        client_msg_id=client_msg_id(payload),
    )
