"""The wire protocol (docs/protocol.md, "Connecting" and "Frames"): room ids, frames and error codes.

Pure functions, no I/O. Frames are compact UTF-8 JSON bytes, ready for ``PostToConnection``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    UNKNOWN_ACTION = "unknown_action"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    FORBIDDEN_ROOM = "forbidden_room"
    RATE_LIMITED = "rate_limited"
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


def message_frame(
    *, room_id: str, user_id: str, message: str, message_id: str, timestamp: str, name: str | None = None
) -> bytes:
    frame: dict[str, Any] = {
        "action": "message",
        "room_id": room_id,
        "user_id": user_id,
        "message": message,
        "message_id": message_id,
        "timestamp": timestamp,
    }
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
        return FrameError(ErrorCode.UNKNOWN_ACTION, 'the frame has no "action"; use "sendMessage"')
    shown = action if len(action) <= 64 else action[:64] + "…"
    return FrameError(ErrorCode.UNKNOWN_ACTION, f'unknown action "{shown}"; use "sendMessage"')


def validate_chat_message(frame: dict[str, Any], *, connection_room: str, max_bytes: int) -> str:
    """The text of a ``sendMessage`` frame, checked in the contract's order: forbidden_room,
    invalid_message, message_too_large. The message goes to ``connection_room``: no other is allowed."""
    room_id = frame.get("room_id", connection_room)
    if room_id != connection_room:
        raise FrameError(
            ErrorCode.FORBIDDEN_ROOM,
            f'this connection is in room "{connection_room}" and can only post there',
        )
    text = frame.get("message")
    if not isinstance(text, str) or not text.strip():
        raise FrameError(ErrorCode.INVALID_MESSAGE, '"message" must be a non-empty string')
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates such as "\ud800" decode from JSON but are not text
        raise FrameError(ErrorCode.INVALID_MESSAGE, '"message" is not valid Unicode text') from None
    if size > max_bytes:
        raise FrameError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message is {size:,} bytes; at most {max_bytes:,} bytes (UTF-8) are allowed",
        )
    return text
