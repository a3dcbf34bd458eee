"""sendMessage: broadcast to the sender's room, every error code, gone-connection cleanup."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import load_function
from tests.support.events import FakeContext, message_event
from tests.support.management_api import FakeManagementApi
from tests.support.records import TABLE, put_record, record_ids

SENDER = "SENDERxxxxxxxx0="


@pytest.fixture
def send(dynamodb: Any, management_api: FakeManagementApi) -> Any:
    put_record(dynamodb, SENDER, "general", "alice", name="Alice")
    management_api.live.add(SENDER)
    return load_function("send_message")


def call(module: Any, body: Any, connection_id: str = SENDER) -> dict[str, Any]:
    return module.handler(message_event(body, connection_id=connection_id), FakeContext())


def test_send_message_reaches_everyone_in_the_room_sender_included(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    for cid, room in [
        ("BOBxxxxxxxxxxx0=", "general"),
        ("CAROLxxxxxxxxx0=", "general"),
        ("DAVExxxxxxxxxx0=", "other"),
    ]:
        put_record(dynamodb, cid, room)
        management_api.live.add(cid)
    assert (
        call(send, {"action": "sendMessage", "room_id": "general", "message": "Hello"})["statusCode"] == 200
    )
    for cid in (SENDER, "BOBxxxxxxxxxxx0=", "CAROLxxxxxxxxx0="):
        [frame] = management_api.frames_to(cid)
        assert frame["action"] == "message"
        assert frame["room_id"] == "general"
        assert frame["user_id"] == "alice"
        assert frame["name"] == "Alice"
        assert frame["message"] == "Hello"
        assert frame["timestamp"].endswith("Z") and len(frame["timestamp"]) == 20
    assert management_api.frames_to("DAVExxxxxxxxxx0=") == []
    message_ids = {management_api.frames_to(cid)[0]["message_id"] for cid in (SENDER, "BOBxxxxxxxxxxx0=")}
    assert len(message_ids) == 1


def test_send_message_without_room_uses_the_connections_room(
    send: Any, management_api: FakeManagementApi
) -> None:
    call(send, {"action": "sendMessage", "message": "hi"})
    assert management_api.frames_to(SENDER)[0]["room_id"] == "general"


def test_send_message_unique_ids_per_message(send: Any, management_api: FakeManagementApi) -> None:
    call(send, {"action": "sendMessage", "message": "one"})
    call(send, {"action": "sendMessage", "message": "two"})
    frames = management_api.frames_to(SENDER)
    assert [f["message"] for f in frames] == ["one", "two"]
    assert frames[0]["message_id"] != frames[1]["message_id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ("", "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),
        ('{"action": "sendMessage", "message": ' + "9" * 5000 + "}", "invalid_json"),
        ({"action": "dance", "message": "hi"}, "unknown_action"),
        ({"action": "sendMessage", "room_id": "other", "message": "hi"}, "forbidden_room"),
        ({"action": "sendMessage", "room_id": 7, "message": "hi"}, "forbidden_room"),
        ({"action": "sendMessage"}, "invalid_message"),
        ({"action": "sendMessage", "message": 42}, "invalid_message"),
        ({"action": "sendMessage", "message": ["hi"]}, "invalid_message"),
        ({"action": "sendMessage", "message": None}, "invalid_message"),
        ({"action": "sendMessage", "message": "   \n\t "}, "invalid_message"),
        ('{"action": "sendMessage", "message": "\\ud800"}', "invalid_message"),
        ({"action": "sendMessage", "message": "x" * 4097}, "message_too_large"),
        ({"action": "sendMessage", "message": "\u00e9" * 2049}, "message_too_large"),
        # Several apply: the contract's order decides.
        ({"action": "sendMessage", "room_id": "other", "message": ""}, "forbidden_room"),
        ({"action": "sendMessage", "room_id": "other", "message": "x" * 5000}, "forbidden_room"),
        ({"action": "sendMessage", "message": ""}, "invalid_message"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_send_message_refusals_go_to_sender_only_and_broadcast_nothing(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, body: Any, code: str
) -> None:
    put_record(dynamodb, "BOBxxxxxxxxxxx0=", "general")
    management_api.live.add("BOBxxxxxxxxxxx0=")
    response = call(send, body)
    assert response["statusCode"] == 200
    [frame] = management_api.frames_to(SENDER)
    assert frame["action"] == "error"
    assert frame["code"] == code
    assert isinstance(frame["message"], str) and frame["message"]
    assert "Traceback" not in frame["message"]
    assert management_api.frames_to("BOBxxxxxxxxxxx0=") == []


def test_send_message_at_exactly_the_limit_is_delivered(send: Any, management_api: FakeManagementApi) -> None:
    call(send, {"action": "sendMessage", "message": "\u00e9" * 2048})  # 4096 bytes
    assert management_api.frames_to(SENDER)[0]["action"] == "message"


def test_send_message_too_large_names_the_limit(send: Any, management_api: FakeManagementApi) -> None:
    call(send, {"action": "sendMessage", "message": "x" * 5000})
    assert "4,096" in management_api.frames_to(SENDER)[0]["message"]


def test_send_message_from_unregistered_connection_is_refused(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    management_api.live.add("GHOSTxxxxxxxxx0=")
    call(send, {"action": "sendMessage", "message": "hi"}, connection_id="GHOSTxxxxxxxxx0=")
    assert management_api.frames_to("GHOSTxxxxxxxxx0=")[0]["code"] == "forbidden_room"
    assert management_api.frames_to(SENDER) == []


def test_send_message_skips_expired_records(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    put_record(dynamodb, "OLDxxxxxxxxxxx0=", "general", ttl=int(time.time()) - 1)
    management_api.live.add("OLDxxxxxxxxxxx0=")
    call(send, {"action": "sendMessage", "message": "hi"})
    assert management_api.attempts.get("OLDxxxxxxxxxxx0=", 0) == 0


def test_send_message_deletes_exactly_the_gone_connection(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    put_record(dynamodb, "GONExxxxxxxxxx0=", "general")  # not live: the fake answers 410
    put_record(dynamodb, "BOBxxxxxxxxxxx0=", "general")
    management_api.live.add("BOBxxxxxxxxxxx0=")
    call(send, {"action": "sendMessage", "message": "hi"})
    assert record_ids(dynamodb) == {SENDER, "BOBxxxxxxxxxxx0="}


@pytest.mark.parametrize("status", [403, 413, 429, 500])
def test_send_message_other_errors_delete_nothing(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, status: int
) -> None:
    put_record(dynamodb, "FLAKYxxxxxxxxx0=", "general")
    management_api.scripts["FLAKYxxxxxxxxx0="] = [status] * 10
    call(send, {"action": "sendMessage", "message": "hi"})
    assert "FLAKYxxxxxxxxx0=" in record_ids(dynamodb)
    retried = status in (429, 500)
    assert management_api.attempts["FLAKYxxxxxxxxx0="] == (3 if retried else 1)


@pytest.mark.parametrize("status", [429, 500])
def test_send_message_transient_errors_are_retried_until_delivered(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, status: int
) -> None:
    put_record(dynamodb, "FLAKYxxxxxxxxx0=", "general")
    management_api.live.add("FLAKYxxxxxxxxx0=")
    management_api.scripts["FLAKYxxxxxxxxx0="] = [status, status]
    call(send, {"action": "sendMessage", "message": "hi"})
    assert [f["message"] for f in management_api.frames_to("FLAKYxxxxxxxxx0=")] == ["hi"]


def test_send_message_reads_every_page_of_a_large_room(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    # Seed defect 4: one Query page only. 50 items a page makes 130 members span 3 pages.
    members = [f"M{i:013d}x0=" for i in range(129)]
    for cid in members:
        put_record(dynamodb, cid, "general")
        management_api.live.add(cid)
    send.store.page_size = 50
    assert send.store.room_members("general").pages == 3
    call(send, {"action": "sendMessage", "message": "to all"})
    assert all(management_api.frames_to(cid) for cid in [*members, SENDER])


def test_send_message_internal_error_sends_internal_frame_without_trace(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    dynamodb.delete_table(TableName=TABLE)
    response = call(send, {"action": "sendMessage", "message": "hi"})
    assert response["statusCode"] == 500
    [frame] = management_api.frames_to(SENDER)
    assert frame == {"action": "error", "code": "internal", "message": frame["message"]}
    assert "ResourceNotFound" not in frame["message"] and "Traceback" not in frame["message"]


def test_send_message_error_frame_is_valid_json_object(send: Any, management_api: FakeManagementApi) -> None:
    call(send, "{")
    raw = management_api.delivered[0][1]
    assert json.loads(raw)["code"] == "invalid_json"


def test_send_message_rate_limit_allows_burst_then_refuses(
    dynamodb: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_BURST", "3")
    put_record(dynamodb, SENDER, "general", "alice")
    management_api.live.add(SENDER)
    module = load_function("send_message")
    now = [time.time()]
    module.limiter._clock = lambda: now[0]
    for i in range(5):
        call(module, {"action": "sendMessage", "message": f"m{i}"})
    frames = management_api.frames_to(SENDER)
    assert [f.get("message") for f in frames[:3]] == ["m0", "m1", "m2"]
    # Told once per window; the next refused frame is dropped without an answer.
    assert [f["code"] for f in frames[3:]] == ["rate_limited"]
    now[0] += 1.0  # one token refilled
    call(module, {"action": "sendMessage", "message": "later"})
    assert management_api.frames_to(SENDER)[-1]["message"] == "later"


def test_send_message_rate_limit_zero_disables_it(
    dynamodb: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "0")
    put_record(dynamodb, SENDER, "general", "alice")
    management_api.live.add(SENDER)
    module = load_function("send_message")
    for i in range(30):
        call(module, {"action": "sendMessage", "message": f"m{i}"})
    assert all(f["action"] == "message" for f in management_api.frames_to(SENDER))
