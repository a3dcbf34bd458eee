"""publish: a backend's message to a room or a user, from a system sender, stored and fanned out
(sharded past the shard size); a bad payload is a JSON error naming the field, never a stack trace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from local_stack.testing import FakeContext, FakeManagementApi
from shared.config import ConfigError
from tests.conftest import load_function
from tests.support.records import MESSAGES_TABLE, record_ids, table_items
from tests.support.sqs import bodies, deliver, fanout_context

ROOM = "news"
HI = {"room_id": ROOM, "message": "hi"}


@dataclass
class Room:
    members: list[str]
    dynamodb: Any
    api: FakeManagementApi

    def stored(self) -> list[dict[str, Any]]:
        return [item for item in table_items(self.dynamodb, MESSAGES_TABLE) if "message" in item]

    def untouched(self) -> bool:
        return self.stored() == [] and all(self.api.frames_to(cid) == [] for cid in self.members)


@pytest.fixture
def room(connected: Any, dynamodb: Any, management_api: FakeManagementApi) -> Room:
    """Four readers of ROOM, live."""
    members = [f"P{i:014d}0=" for i in range(4)]
    for i, cid in enumerate(members):
        connected(cid, ROOM, f"reader{i}")
    return Room(members, dynamodb, management_api)


def invoke(payload: Any, module: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = (module or load_function("publish")).handler(payload, FakeContext())
    json.dumps(result)  # what Lambda returns to the invoker
    return result


def test_a_published_message_reaches_the_room_from_the_system_sender_and_is_stored(room: Room) -> None:
    result = invoke({"room_id": ROOM, "message": "Deploy at 5pm"})
    assert result["ok"] is True and result["recipients"] == 4 and result["shards"] == 0
    for cid in room.members:
        [frame] = room.api.frames_to(cid)
        assert frame["action"] == "message"
        assert (frame["user_id"], frame["room_id"], frame["message"]) == ("system", ROOM, "Deploy at 5pm")
        assert frame["message_id"] == result["message_id"]
    [item] = room.stored()
    assert item["message_id"]["S"] == result["message_id"] and item["user_id"]["S"] == "system"


def test_the_sender_and_its_name_may_be_given(room: Room) -> None:
    invoke({**HI, "user_id": "ops-bot", "name": "Ops"})
    frame = room.api.frames_to(room.members[0])[0]
    assert (frame["user_id"], frame["name"]) == ("ops-bot", "Ops")


def test_a_message_to_a_user_reaches_every_connection_of_that_user_only(
    connected: Any, management_api: FakeManagementApi
) -> None:
    for cid, user in [
        ("BOBxxxxxxxxxxx0=", "bob"),
        ("BOBxxxxxxxxxxx1=", "bob"),
        ("CAROLxxxxxxxxx0=", "carol"),
    ]:
        connected(cid, ROOM, user)
    result = invoke({"to_user_id": "bob", "message": "your export is ready"})
    assert result["ok"] is True and result["recipients"] == 2
    for cid in ("BOBxxxxxxxxxxx0=", "BOBxxxxxxxxxxx1="):
        [frame] = management_api.frames_to(cid)
        assert frame["action"] == "direct"
        assert (frame["from_user_id"], frame["to_user_id"]) == ("system", "bob")
    assert management_api.frames_to("CAROLxxxxxxxxx0=") == []


def test_a_repeated_client_msg_id_fans_the_first_message_out_again(room: Room) -> None:
    publish = load_function("publish")
    first = invoke({"room_id": ROOM, "message": "once", "client_msg_id": "job-7"}, publish)
    again = invoke({"room_id": ROOM, "message": "once", "client_msg_id": "job-7"}, publish)
    assert (again["message_id"], again["duplicate"]) == (first["message_id"], True)
    assert len(room.stored()) == 1
    assert {f["message_id"] for f in room.api.frames_to(room.members[0])} == {first["message_id"]}


def test_past_the_shard_size_a_published_message_goes_through_the_fanout_queue(sqs: Any, room: Room) -> None:
    result = invoke({"room_id": ROOM, "message": "to many"})
    assert result["ok"] is True and result["shards"] == 2
    assert all(room.api.frames_to(cid) == [] for cid in room.members)
    jobs = bodies(sqs.client, sqs.url)
    assert sorted(m[0] for job in jobs for m in job["members"]) == sorted(room.members)
    for job in jobs:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(job))
    deliver(sqs.client, sqs.url, load_function("fanout"), fanout_context())
    for cid in room.members:
        assert [f["message_id"] for f in room.api.frames_to(cid)] == [result["message_id"]]


@pytest.mark.parametrize(
    ("payload", "code", "names"),
    [
        ("not json", "invalid_json", "JSON"),
        (["news"], "invalid_request", "JSON object"),
        ({"message": "hi"}, "invalid_request", '"room_id" and "to_user_id"'),
        ({**HI, "to_user_id": "bob"}, "invalid_request", '"room_id" and "to_user_id"'),
        ({"room_id": "bad room!", "message": "hi"}, "invalid_request", '"room_id"'),
        ({"room_id": 7, "message": "hi"}, "invalid_request", '"room_id"'),
        ({"to_user_id": "", "message": "hi"}, "invalid_request", '"to_user_id"'),
        ({"to_user_id": "system", "message": "hi"}, "invalid_request", '"to_user_id"'),
        ({**HI, "user_id": "a\nb"}, "invalid_request", '"user_id"'),
        ({**HI, "name": 5}, "invalid_request", '"name"'),
        # Lone surrogates: valid JSON, not text (the store would fail: internal, a stack trace logged).
        ({**HI, "user_id": "\ud800"}, "invalid_request", '"user_id"'),
        ({**HI, "name": "\ud800"}, "invalid_request", '"name"'),
        ({"to_user_id": "\ud800", "message": "hi"}, "invalid_request", '"to_user_id"'),
        ({**HI, "client_msg_id": "no spaces"}, "invalid_request", '"client_msg_id"'),
        ({**HI, "rooms": ["x"]}, "invalid_request", '"rooms"'),
        ({"room_id": ROOM}, "invalid_message", '"message"'),
        ({"room_id": ROOM, "message": "  "}, "invalid_message", '"message"'),
        ({"room_id": ROOM, "message": "x" * 4097}, "message_too_large", "4,096"),
    ],
)
def test_a_bad_payload_is_a_json_error_naming_the_field_and_nothing_is_stored(
    room: Room, payload: Any, code: str, names: str
) -> None:
    result = invoke(payload)
    assert result["ok"] is False
    assert result["error"]["code"] == code
    assert names in result["error"]["message"]
    assert "Traceback" not in json.dumps(result)
    assert room.untouched()


def test_an_unexpected_failure_is_a_json_error_too(room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    publish = load_function("publish")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(publish.service.messages, "save", broken)
    result = invoke(HI, publish)
    assert result == {"ok": False, "error": {"code": "internal", "message": "internal error; try again"}}


def test_shards_that_cannot_be_queued_are_a_json_error_asking_for_the_same_client_msg_id(
    sqs: Any, room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish = load_function("publish")

    class Unreachable:
        meta = sqs.client.meta

        def send_message_batch(self, **params: Any) -> Any:
            raise EndpointConnectionError(endpoint_url=sqs.url)

    monkeypatch.setattr(publish.service.fanout, "_client", Unreachable())
    result = invoke({**HI, "client_msg_id": "j1"}, publish)
    assert result["ok"] is False and result["error"]["code"] == "internal"
    assert "client_msg_id" in result["error"]["message"]


def test_publish_needs_the_callback_url(
    function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBSOCKET_CALLBACK_URL")
    with pytest.raises(ConfigError, match="WEBSOCKET_CALLBACK_URL"):
        load_function("publish")


def test_a_gone_connection_found_by_a_publish_is_removed(room: Room) -> None:
    room.api.live.discard(room.members[0])
    assert invoke(HI)["ok"] is True
    assert record_ids(room.dynamodb) == set(room.members[1:])
    offline = [f for f in room.api.frames_to(room.members[1]) if f["action"] == "presence"]
    assert [(f["user_id"], f["state"]) for f in offline] == [("reader0", "offline")]


@pytest.mark.parametrize(
    ("max_bytes", "payload", "sharded", "why"),
    [
        # 29,300 control characters: each \u0001 in the frame (about 176 KB, over a post's 128 KiB).
        ("32768", {"room_id": ROOM, "message": "\x01" * 29_300}, False, "131,072"),
        ("32768", {"to_user_id": "reader0", "message": "\x01" * 29_300}, True, "131,072"),
        # 40,000 "é": an 80 KB frame, but each is \u00e9 in a shard job (about 240 KB).
        ("131072", {"room_id": ROOM, "message": "\u00e9" * 40_000}, True, "shard job"),
    ],
    ids=["room-frame-over-a-post", "user-frame-over-a-post", "job-over-sqs"],
)
def test_a_message_that_cannot_be_delivered_is_refused_before_it_is_stored(
    sqs: Any,
    room: Room,
    monkeypatch: pytest.MonkeyPatch,
    max_bytes: str,
    payload: Any,
    sharded: bool,
    why: str,
) -> None:
    monkeypatch.setenv("MAX_MESSAGE_BYTES", max_bytes)
    if not sharded:
        monkeypatch.delenv("FANOUT_QUEUE_URL")
    result = invoke({**payload, "client_msg_id": "big-1"})
    assert result["ok"] is False
    assert result["error"]["code"] == "message_too_large"
    assert why in result["error"]["message"]
    assert room.untouched()
    assert bodies(sqs.client, sqs.url) == []
