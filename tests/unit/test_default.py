from __future__ import annotations

import time
from typing import Any

import pytest

from local_stack.testing import FakeContext, FakeManagementApi
from tests.conftest import load_function
from tests.support.events import message_event

CID = "DEFAULTxxxxxxx0="


def event(body: str, cid: str = CID) -> dict[str, Any]:
    return message_event(body, connection_id=cid, route="$default")


@pytest.fixture
def default(connected: Any) -> Any:
    connected(CID, "general", "alice")
    return load_function("default")


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ("hello", "invalid_json", ""),
        ("42", "invalid_json", ""),
        ('"text"', "invalid_json", ""),
        ('{"message": "no action"}', "unknown_action", ""),
        ('{"action": "joinRoom"}', "unknown_action", "joinRoom"),
        ('{"action": 5}', "unknown_action", ""),
    ],
)
def test_default_answers_sender_with_contract_error(
    default: Any, management_api: FakeManagementApi, body: str, code: str, says: str
) -> None:
    assert default.handler(event(body), FakeContext())["statusCode"] == 200
    [frame] = management_api.frames_to(CID)
    assert frame["action"] == "error" and frame["code"] == code and frame["message"]
    assert says in frame["message"]


def test_default_gone_sender_is_not_an_error(default: Any, management_api: FakeManagementApi) -> None:
    assert default.handler(event("x", "GONExxxxxxxxxx0="), FakeContext())["statusCode"] == 200


def test_default_answers_even_when_the_rate_limit_cannot_be_read(
    default: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    dynamodb.delete_table(TableName="chat_connections")
    assert default.handler(event("junk"), FakeContext())["statusCode"] == 200
    assert [f["code"] for f in management_api.frames_to(CID)] == ["invalid_json"]


def test_default_frames_count_against_the_users_limit(
    management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, connected: Any
) -> None:
    monkeypatch.setenv("RATE_LIMIT_BURST", "2")
    connected(CID, "general", "alice")
    module = load_function("default")
    now = time.time()
    module.service.limiter._clock = lambda: now  # no refill between the frames
    for _ in range(6):
        module.handler(event("junk"), FakeContext())
    assert [f["code"] for f in management_api.frames_to(CID)] == [
        "invalid_json",
        "invalid_json",
        "rate_limited",
    ]
