"""The wire protocol: room ids, frames and error codes (docs/protocol.md, docs/history.md).

Pure functions, no I/O. Frames are compact UTF-8 JSON bytes, ready for ``PostToConnection``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

from shared.ids import is_ulid

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CLIENT_MSG_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A user id is a token's sub: any printable text (Cognito: a UUID, Auth0: "auth0|..."), within a bound.
USER_ID_PATTERN = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 100


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    UNKNOWN_ACTION = "unknown_action"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    FORBIDDEN_ROOM = "forbidden_room"
    INVALID_REQUEST = "invalid_request"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ROOMS = "too_many_rooms"
    INTERNAL = "internal"


class FrameError(Exception):
    """A frame the contract refuses; becomes an error frame to the sender only."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_valid_room_id(value: object) -> TypeGuard[str]:
    # fullmatch: re.match with "$" would accept a trailing newline.
    return isinstance(value, str) and ROOM_ID_PATTERN.fullmatch(value) is not None


def encode(frame: dict[str, Any]) -> bytes:
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the client (e.g. an "action" of "\ud800")
        return json.dumps(frame, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_frame(code: ErrorCode, message: str) -> bytes:
    return encode({"action": "error", "code": code.value, "message": message})


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 UTC with second precision, as docs/protocol.md shows (``2026-11-29T01:23:45Z``)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_object(
    *,
    room_id: str,
    user_id: str,
    message: str,
    message_id: str,
    timestamp: str,
    name: str | None = None,
    client_msg_id: str | None = None,
) -> dict[str, Any]:
    """A chat message as it is broadcast and as history lists it."""
    frame: dict[str, Any] = {
        "action": "message",
        "room_id": room_id,
        "user_id": user_id,
        "message": message,
        "message_id": message_id,
        "timestamp": timestamp,
    }
    return _with_optional(frame, name=name, client_msg_id=client_msg_id)


def ack_frame(*, client_msg_id: str, message_id: str, room_id: str) -> bytes:
    return encode(
        {"action": "ack", "client_msg_id": client_msg_id, "message_id": message_id, "room_id": room_id}
    )


def history_frame(
    *, room_id: str | None, messages: list[dict[str, Any]], has_more: bool, with_user_id: str | None = None
) -> bytes:
    where = {"room_id": room_id} if with_user_id is None else {"with_user_id": with_user_id}
    return encode({"action": "history", **where, "messages": messages, "has_more": has_more})


def direct_object(
    *,
    from_user_id: str,
    to_user_id: str,
    message: str,
    message_id: str,
    timestamp: str,
    name: str | None = None,
    client_msg_id: str | None = None,
) -> dict[str, Any]:
    """A direct message as it is delivered and as a conversation's history lists it."""
    frame: dict[str, Any] = {
        "action": "direct",
        "from_user_id": from_user_id,
        "to_user_id": to_user_id,
        "message": message,
        "message_id": message_id,
        "timestamp": timestamp,
    }
    return _with_optional(frame, name=name, client_msg_id=client_msg_id)


def direct_ack_frame(*, client_msg_id: str, message_id: str, to_user_id: str) -> bytes:
    return encode(
        {"action": "ack", "client_msg_id": client_msg_id, "message_id": message_id, "to_user_id": to_user_id}
    )


def room_frame(action: str, room_id: str) -> bytes:
    """``joined`` / ``left``."""
    return encode({"action": action, "room_id": room_id})


def members_frame(*, room_id: str, members: list[tuple[str, str | None]]) -> bytes:
    listed = [
        {"user_id": user, "name": name} if name is not None else {"user_id": user} for user, name in members
    ]
    return encode({"action": "members", "room_id": room_id, "members": listed})


def presence_frame(*, room_id: str, user_id: str, name: str | None, online: bool) -> bytes:
    frame: dict[str, Any] = {"action": "presence", "room_id": room_id, "user_id": user_id}
    if name is not None:
        frame["name"] = name
    frame["state"] = "online" if online else "offline"
    return encode(frame)


def typing_frame(*, room_id: str, user_id: str, name: str | None) -> bytes:
    frame: dict[str, Any] = {"action": "typing", "room_id": room_id, "user_id": user_id}
    if name is not None:
        frame["name"] = name
    return encode(frame)


def parse_frame(body: str | None) -> dict[str, Any]:
    """The frame as a JSON object, or ``invalid_json``.

    Deeply nested arrays (RecursionError) and integers too long to convert (ValueError) are refused like
    any other unparseable frame.
    """
    if not body:
        raise FrameError(ErrorCode.INVALID_JSON, "the frame is empty; send a JSON object")
    try:
        frame = json.loads(body)
    except (ValueError, RecursionError):
        raise FrameError(ErrorCode.INVALID_JSON, "the frame is not valid JSON; send a JSON object") from None
    if not isinstance(frame, dict):
        raise FrameError(ErrorCode.INVALID_JSON, "the frame must be a JSON object")
    return frame


def unknown_action_error(frame: dict[str, Any]) -> FrameError:
    action = frame.get("action")
    if not isinstance(action, str) or not action:
        return FrameError(ErrorCode.UNKNOWN_ACTION, f'the frame has no "action"; use {_ACTIONS}')
    shown = action if len(action) <= 64 else action[:64] + "…"
    return FrameError(ErrorCode.UNKNOWN_ACTION, f'unknown action "{shown}"; use {_ACTIONS}')


_ACTIONS = '"sendMessage", "getHistory", "join", "leave", "listMembers", "typing" or "sendDirect"'


@dataclass(frozen=True, kw_only=True)
class RoomsOf:
    """The rooms a connection is in, and its first room (the connect URL's)."""

    first: str
    rooms: frozenset[str]


def requested_room(frame: dict[str, Any], *, connection: RoomsOf) -> str:
    """The frame's ``room_id`` (omitted: the connection's first room while it is in it), or
    ``forbidden_room``."""
    if "room_id" not in frame:
        if connection.first in connection.rooms:
            return connection.first
        raise FrameError(
            ErrorCode.FORBIDDEN_ROOM,
            f'this connection has left its first room "{connection.first}": name a "room_id" it is in',
        )
    room_id = frame["room_id"]
    if not isinstance(room_id, str) or room_id not in connection.rooms:
        shown = room_id if isinstance(room_id, str) and len(room_id) <= 64 else "that room"
        raise FrameError(ErrorCode.FORBIDDEN_ROOM, f'this connection is not in room "{shown}": join it first')
    return room_id


def room_to_join(frame: dict[str, Any]) -> str:
    """The ``room_id`` of a ``join`` / ``leave`` frame, or ``invalid_request``."""
    room_id = frame.get("room_id")
    if not is_valid_room_id(room_id):
        raise FrameError(
            ErrorCode.INVALID_REQUEST, '"room_id" is required and must match ^[A-Za-z0-9_.:-]{1,64}$'
        )
    return room_id


def is_user_text(value: object) -> TypeGuard[str]:
    """A user id or a display name: 1 to 128 characters, no control characters, and text that encodes to
    UTF-8 (a lone surrogate such as ``"\\ud800"`` is valid JSON but no store or frame can carry it)."""
    return isinstance(value, str) and USER_ID_PATTERN.fullmatch(value) is not None and encodes_to_utf8(value)


def encodes_to_utf8(value: str) -> bool:
    """False for text with a lone surrogate (``"\\ud800"``), which no store or frame can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def user_id_field(frame: dict[str, Any], key: str) -> str:
    """A user id field (``to_user_id``, ``with_user_id``), or ``invalid_request``."""
    value = frame.get(key)
    if not is_user_text(value):
        raise FrameError(
            ErrorCode.INVALID_REQUEST,
            f'"{key}" must be a user id (1 to 128 characters of UTF-8 text, no control characters)',
        )
    return value


def message_text(frame: dict[str, Any], *, max_bytes: int) -> str:
    """The ``message`` of a frame: invalid_message, invalid_request (client_msg_id), message_too_large."""
    text = frame.get("message")
    if not isinstance(text, str) or not text.strip():
        raise FrameError(ErrorCode.INVALID_MESSAGE, '"message" must be a non-empty string')
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates such as "\ud800" decode from JSON but are not text
        raise FrameError(ErrorCode.INVALID_MESSAGE, '"message" is not valid Unicode text') from None
    client_msg_id(frame)  # invalid_request ranks with invalid_message, before message_too_large
    if size > max_bytes:
        raise FrameError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message is {size:,} bytes; at most {max_bytes:,} bytes (UTF-8) are allowed",
        )
    return text


def validate_chat_message(frame: dict[str, Any], *, connection: RoomsOf, max_bytes: int) -> tuple[str, str]:
    """(room, text) of a ``sendMessage`` frame, checked in the contract's order: forbidden_room,
    invalid_message, message_too_large."""
    room_id = requested_room(frame, connection=connection)
    return room_id, message_text(frame, max_bytes=max_bytes)


def client_msg_id(frame: dict[str, Any]) -> str | None:
    """The frame's ``client_msg_id`` (None when absent), or ``invalid_request``."""
    value = frame.get("client_msg_id")
    if value is None:
        return None
    if not isinstance(value, str) or CLIENT_MSG_ID_PATTERN.fullmatch(value) is None:
        raise FrameError(
            ErrorCode.INVALID_REQUEST,
            '"client_msg_id" must be 1 to 64 characters of A-Z, a-z, 0-9, "_" or "-"',
        )
    return value


@dataclass(frozen=True, kw_only=True)
class HistoryRequest:
    room_id: str | None  # None: a direct conversation
    with_user_id: str | None
    before: str | None
    after: str | None
    limit: int


def validate_history_request(frame: dict[str, Any], *, connection: RoomsOf, user_id: str) -> HistoryRequest:
    """A ``getHistory`` frame checked in the contract's order: forbidden_room, then invalid_request.

    ``with_user_id`` instead of ``room_id`` reads the direct conversation with that user. A cursor given
    as ``null`` counts as absent; unknown keys are ignored.
    """
    room_id: str | None = None
    with_user_id: str | None = None
    if frame.get("with_user_id") is not None:
        if frame.get("room_id") is not None:
            raise FrameError(ErrorCode.INVALID_REQUEST, 'give "room_id" or "with_user_id", not both')
        with_user_id = user_id_field(frame, "with_user_id")
        if with_user_id == user_id:
            raise FrameError(ErrorCode.INVALID_REQUEST, '"with_user_id" must be another user')
    else:
        room_id = requested_room(frame, connection=connection)
    before, after = frame.get("before"), frame.get("after")
    for name, cursor in (("before", before), ("after", after)):
        if cursor is not None and not is_ulid(cursor):
            raise FrameError(
                ErrorCode.INVALID_REQUEST, f'"{name}" must be a message_id (26 characters, as messages carry)'
            )
    if before is not None and after is not None:
        raise FrameError(ErrorCode.INVALID_REQUEST, 'give at most one of "before" and "after"')
    limit = frame.get("limit", HISTORY_LIMIT_DEFAULT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise FrameError(
            ErrorCode.INVALID_REQUEST, f'"limit" must be an integer from 1 to {HISTORY_LIMIT_MAX}'
        )
    return HistoryRequest(room_id=room_id, with_user_id=with_user_id, before=before, after=after, limit=limit)


def _with_optional(frame: dict[str, Any], **optional: str | None) -> dict[str, Any]:
    """The frame with each optional field that has a value (absent, not null, when it has none)."""
    frame.update((key, value) for key, value in optional.items() if value is not None)
    return frame
