"""sendMessage: broadcast to the sender's room, every error code, gone-connection cleanup."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.testing import FakeContext, FakeManagementApi
from tests.conftest import load_function
from tests.support.events import message_event
from tests.support.records import MESSAGES_TABLE, TABLE, put_record, record_ids, table_items

SENDER = "SENDERxxxxxxxx0="


@pytest.fixture
def send(connected: Any) -> Any:
    connected(SENDER, "general", "alice", name="Alice")
    return load_function("send_message")


def call(module: Any, body: Any, connection_id: str = SENDER) -> dict[str, Any]:
    return module.handler(message_event(body, connection_id=connection_id), FakeContext())


def test_send_message_reaches_everyone_in_the_room_sender_included(
    send: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    for cid, room in [
        ("BOBxxxxxxxxxxx0=", "general"),
        ("CAROLxxxxxxxxx0=", "general"),
        ("DAVExxxxxxxxxx0=", "other"),
    ]:
        connected(cid, room)
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
    send: Any, management_api: FakeManagementApi, body: Any, code: str, connected: Any
) -> None:
    connected("BOBxxxxxxxxxxx0=", "general")
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
    send: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("OLDxxxxxxxxxxx0=", "general", ttl=int(time.time()) - 1)
    call(send, {"action": "sendMessage", "message": "hi"})
    assert management_api.attempts.get("OLDxxxxxxxxxxx0=", 0) == 0


def test_send_message_deletes_exactly_the_gone_connection(send: Any, dynamodb: Any, connected: Any) -> None:
    put_record(dynamodb, "GONExxxxxxxxxx0=", "general")  # not live: the fake answers 410
    connected("BOBxxxxxxxxxxx0=", "general")
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
    send: Any, management_api: FakeManagementApi, status: int, connected: Any
) -> None:
    connected("FLAKYxxxxxxxxx0=", "general")
    management_api.scripts["FLAKYxxxxxxxxx0="] = [status, status]
    call(send, {"action": "sendMessage", "message": "hi"})
    assert [f["message"] for f in management_api.frames_to("FLAKYxxxxxxxxx0=")] == ["hi"]


def test_send_message_reads_every_page_of_a_large_room(
    send: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    # Seed defect 4: one Query page only. 50 items a page makes 130 members span 3 pages.
    members = [f"M{i:013d}x0=" for i in range(129)]
    for cid in members:
        connected(cid, "general")
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
    management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, connected: Any
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_BURST", "3")
    connected(SENDER, "general", "alice")
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
    management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, connected: Any
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "0")
    connected(SENDER, "general", "alice")
    module = load_function("send_message")
    for i in range(30):
        call(module, {"action": "sendMessage", "message": f"m{i}"})
    assert all(f["action"] == "message" for f in management_api.frames_to(SENDER))


# --- stored before sent: acks, idempotent client_msg_id, retention ------------------------------------


def stored_messages(dynamodb: Any, room: str = "general") -> list[dict[str, Any]]:
    return dynamodb.query(
        TableName=MESSAGES_TABLE,
        KeyConditionExpression="room_id = :r",
        ExpressionAttributeValues={":r": {"S": room}},
        ConsistentRead=True,
    )["Items"]


class FailingClient:
    """The function's DynamoDB client, with the message writes failing as a throttled table does."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name in ("put_item", "transact_write_items"):

            def fail(**kwargs: Any) -> Any:
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                    name,
                )

            return fail
        return getattr(self._client, name)


def test_send_message_acks_the_sender_once_stored_then_broadcasts(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("BOBxxxxxxxxxxx0=", "general", "bob")
    events: list[str] = []
    client = send.messages._client

    class WatchingClient:
        def __getattr__(self, name: str) -> Any:
            def call(**kwargs: Any) -> Any:
                result = getattr(client, name)(**kwargs)
                events.append(f"{name} returned")
                return result

            return call

    # Watch the wire: single posts and broadcasts both end in the management client's post_to_connection.
    management = send.sender.client(management_api.endpoint_url)
    post = management.post_to_connection

    def watching_post(*, ConnectionId: str, Data: bytes) -> Any:
        events.append(f"post {json.loads(Data)['action']} to {ConnectionId}")
        return post(ConnectionId=ConnectionId, Data=Data)

    send.messages._client = WatchingClient()
    management.post_to_connection = watching_post
    call(send, {"action": "sendMessage", "message": "Hello", "client_msg_id": "c-7f3a"})
    ack, message = management_api.frames_to(SENDER)
    [stored] = stored_messages(dynamodb)
    assert events[:2] == ["transact_write_items returned", f"post ack to {SENDER}"]
    assert sorted(events[2:]) == ["post message to BOBxxxxxxxxxxx0=", f"post message to {SENDER}"]
    assert ack == {
        "action": "ack",
        "client_msg_id": "c-7f3a",
        "message_id": stored["message_id"]["S"],
        "room_id": "general",
    }
    assert message["action"] == "message" and message["message_id"] == ack["message_id"]
    assert message["client_msg_id"] == "c-7f3a"
    [bob] = management_api.frames_to("BOBxxxxxxxxxxx0=")
    assert bob == message


def test_send_message_without_client_msg_id_is_stored_and_not_acked(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    call(send, {"action": "sendMessage", "message": "Hello"})
    [message] = management_api.frames_to(SENDER)
    assert message["action"] == "message" and "client_msg_id" not in message
    [stored] = stored_messages(dynamodb)
    assert stored["message_id"]["S"] == message["message_id"]


def test_send_message_failed_store_broadcasts_nothing_and_tells_internal(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("BOBxxxxxxxxxxx0=", "general", "bob")
    send.messages._client = FailingClient(send.messages._client)
    for body in (
        {"action": "sendMessage", "message": "Hello", "client_msg_id": "c-1"},
        {"action": "sendMessage", "message": "Hello"},
    ):
        management_api.reset()
        assert call(send, body)["statusCode"] == 500
        [frame] = management_api.frames_to(SENDER)
        assert frame["action"] == "error" and frame["code"] == "internal"
        assert "Throughput" not in frame["message"]
        assert management_api.frames_to("BOBxxxxxxxxxxx0=") == []
    assert stored_messages(dynamodb) == []


def test_send_message_repeated_client_msg_id_stores_once_and_rebroadcasts_the_same_id(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("BOBxxxxxxxxxxx0=", "general", "bob")
    for _ in range(3):
        call(send, {"action": "sendMessage", "message": "Hello", "client_msg_id": "retry-1"})
    acks = [f for f in management_api.frames_to(SENDER) if f["action"] == "ack"]
    received = management_api.frames_to("BOBxxxxxxxxxxx0=")
    [stored] = stored_messages(dynamodb)
    first_id = stored["message_id"]["S"]
    assert [a["message_id"] for a in acks] == [first_id] * 3
    assert [m["message_id"] for m in received] == [first_id] * 3
    assert received[0] == received[1] == received[2]


def test_send_message_repeat_with_other_text_broadcasts_the_first_message(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    call(send, {"action": "sendMessage", "message": "first", "client_msg_id": "c-9"})
    call(send, {"action": "sendMessage", "message": "second", "client_msg_id": "c-9"})
    messages = [f for f in management_api.frames_to(SENDER) if f["action"] == "message"]
    assert [m["message"] for m in messages] == ["first", "first"]
    assert len(stored_messages(dynamodb)) == 1


def test_send_message_same_client_msg_id_of_another_user_is_another_message(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    connected("BOBxxxxxxxxxxx0=", "general", "bob")
    call(send, {"action": "sendMessage", "message": "from alice", "client_msg_id": "c-1"})
    call(
        send,
        {"action": "sendMessage", "message": "from bob", "client_msg_id": "c-1"},
        connection_id="BOBxxxxxxxxxxx0=",
    )
    stored = stored_messages(dynamodb)
    assert sorted(i["message"]["S"] for i in stored) == ["from alice", "from bob"]
    acks = {
        f["message_id"]
        for cid in (SENDER, "BOBxxxxxxxxxxx0=")
        for f in management_api.frames_to(cid)
        if f["action"] == "ack"
    }
    assert len(acks) == 2


def test_send_message_repeat_from_another_connection_of_the_user_is_the_same_message(
    send: Any, dynamodb: Any, connected: Any
) -> None:
    connected("ALICE2xxxxxxxx0=", "general", "alice")
    call(send, {"action": "sendMessage", "message": "hi", "client_msg_id": "c-2"})
    call(
        send,
        {"action": "sendMessage", "message": "hi", "client_msg_id": "c-2"},
        connection_id="ALICE2xxxxxxxx0=",
    )
    assert len(stored_messages(dynamodb)) == 1


def test_send_message_is_kept_for_the_retention_period(
    send: Any, dynamodb: Any, management_api: FakeManagementApi
) -> None:
    before = int(time.time())
    call(send, {"action": "sendMessage", "message": "kept", "client_msg_id": "c-3"})
    after = int(time.time())
    items = dynamodb.scan(TableName=MESSAGES_TABLE, ConsistentRead=True)["Items"]
    assert {i["room_id"]["S"] for i in items} >= {"general", "client#alice"}
    for item in items:
        if item["room_id"]["S"].startswith("rate#"):
            continue
        ttl = int(item["ttl"]["N"])
        assert before + 7 * 86400 <= ttl <= after + 7 * 86400, item


def test_send_message_retention_days_from_the_environment(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, connected: Any
) -> None:
    monkeypatch.setenv("MESSAGE_RETENTION_DAYS", "30")
    connected(SENDER, "general", "alice")
    module = load_function("send_message")
    call(module, {"action": "sendMessage", "message": "kept"})
    [stored] = stored_messages(dynamodb)
    assert abs(int(stored["ttl"]["N"]) - (time.time() + 30 * 86400)) < 5


@pytest.mark.parametrize("value", ["", "x" * 65, "has space", "é", 7, None, ["a"], "a/b"])
def test_send_message_bad_client_msg_id_is_invalid_request(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, value: Any
) -> None:
    body = {"action": "sendMessage", "message": "hi", "client_msg_id": value}
    call(send, body)
    frames = management_api.frames_to(SENDER)
    if value is None:  # null: as if absent
        assert frames[0]["action"] == "message"
        return
    assert [f["code"] for f in frames] == ["invalid_request"]
    assert stored_messages(dynamodb) == []


def test_send_message_invalid_request_ranks_after_invalid_message_before_too_large(
    send: Any, management_api: FakeManagementApi
) -> None:
    call(send, {"action": "sendMessage", "message": "", "client_msg_id": "bad id"})
    call(send, {"action": "sendMessage", "message": "x" * 5000, "client_msg_id": "bad id"})
    call(send, {"action": "sendMessage", "room_id": "other", "message": "x", "client_msg_id": "bad id"})
    codes = [f["code"] for f in management_api.frames_to(SENDER)]
    assert codes == ["invalid_message", "invalid_request", "forbidden_room"]


def test_send_message_ids_sort_in_store_order(
    send: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 30 sends in well under a second would trip the default per-user limit (bursts of 20, 10 a second).
    monkeypatch.setenv("RATE_LIMIT_BURST", "30")
    send = load_function("send_message")
    for i in range(30):
        call(send, {"action": "sendMessage", "message": f"m{i}"})
    ids = [f["message_id"] for f in management_api.frames_to(SENDER)]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert {len(i) for i in ids} == {26}


def test_send_message_client_msg_id_reused_in_another_room_is_refused_not_posted_there(
    send: Any, dynamodb: Any, management_api: FakeManagementApi, connected: Any
) -> None:
    other_tab = "ALICE2xxxxxxxx0="
    connected(other_tab, "random", "alice", name="Alice")
    call(send, {"action": "sendMessage", "message": "in general", "client_msg_id": "c-1"})
    management_api.reset()
    call(send, {"action": "sendMessage", "message": "in random", "client_msg_id": "c-1"}, other_tab)
    [error] = management_api.frames_to(other_tab)
    assert error["action"] == "error" and error["code"] == "invalid_request"
    assert management_api.frames_to(SENDER) == []  # general's message is not re-broadcast from random
    assert stored_messages(dynamodb, "random") == []


def test_send_message_put_retried_after_a_lost_answer_is_stored_once(send: Any, dynamodb: Any) -> None:
    real = send.messages._client

    class AnswerLost:
        """The first attempt lands but its answer is lost; botocore's retry then meets its own item."""

        def __getattr__(self, name: str) -> Any:
            if name != "put_item":
                return getattr(real, name)

            def put_item(**kwargs: Any) -> Any:
                first = {k: v for k, v in kwargs.items() if k != "ReturnValuesOnConditionCheckFailure"}
                real.put_item(**first)
                return real.put_item(**kwargs)

            return put_item

    send.messages._client = AnswerLost()
    call(send, {"action": "sendMessage", "message": "hello"})
    send.messages._client = real
    assert [m["message"]["S"] for m in stored_messages(dynamodb)] == ["hello"]


# 29,300 control characters: 29,300 bytes of text, each escaped as \u0001 in the frame (about 176 KB).
CONTROL_TEXT = "\x01" * 29_300
# 40,000 "é": 80,000 bytes of text and of frame, but each is \u00e9 in a shard job (about 240 KB).
ACCENTED_TEXT = "\u00e9" * 40_000


@pytest.mark.parametrize(
    ("max_bytes", "text", "sharded", "names"),
    [
        ("32768", CONTROL_TEXT, False, "131,072"),
        ("131072", ACCENTED_TEXT, True, "shard job"),
    ],
    ids=["frame-over-a-post", "job-over-sqs"],
)
def test_a_message_whose_frame_cannot_be_delivered_is_refused_before_it_is_stored(
    connected: Any,
    dynamodb: Any,
    sqs: Any,
    management_api: FakeManagementApi,
    monkeypatch: pytest.MonkeyPatch,
    max_bytes: str,
    text: str,
    sharded: bool,
    names: str,
) -> None:
    monkeypatch.setenv("MAX_MESSAGE_BYTES", max_bytes)
    if not sharded:
        monkeypatch.delenv("FANOUT_QUEUE_URL")
    connected(SENDER, "general", "alice")
    connected("BOBxxxxxxxxxxx0=", "general")
    module = load_function("send_message")
    assert len(text.encode()) <= int(max_bytes)  # the text alone passes the message limit
    response = call(module, {"action": "sendMessage", "message": text, "client_msg_id": "big-1"})
    assert response["statusCode"] == 200
    [frame] = management_api.frames_to(SENDER)
    assert (frame["action"], frame["code"]) == ("error", "message_too_large")
    assert names in frame["message"]
    assert management_api.frames_to("BOBxxxxxxxxxxx0=") == []
    assert [i for i in table_items(dynamodb, MESSAGES_TABLE) if "message" in i] == []
