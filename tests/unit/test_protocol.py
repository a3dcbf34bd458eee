from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.protocol import ErrorCode, encode, error_frame, is_valid_room_id, message_object, utc_timestamp


def test_room_id_fullmatch_rejects_trailing_newline() -> None:
    assert is_valid_room_id("general")
    assert not is_valid_room_id("general\n")
    assert not is_valid_room_id(None)
    assert not is_valid_room_id(["general"])


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_frame_shape(code: ErrorCode) -> None:
    assert json.loads(error_frame(code, "why")) == {"action": "error", "code": code.value, "message": "why"}


def test_message_frame_shape_and_utf8() -> None:
    frame = json.loads(
        encode(
            message_object(
                room_id="r", user_id="u", message="h\u00e9llo \U0001f600", message_id="m", timestamp="t"
            )
        )
    )
    assert frame == {
        "action": "message",
        "room_id": "r",
        "user_id": "u",
        "message": "h\u00e9llo \U0001f600",
        "message_id": "m",
        "timestamp": "t",
    }


def test_timestamp_format() -> None:
    assert utc_timestamp(datetime(2026, 11, 29, 1, 23, 45, 999, tzinfo=UTC)) == "2026-11-29T01:23:45Z"
