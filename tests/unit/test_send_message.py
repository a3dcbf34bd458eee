"""sendMessage: broadcast to the sender's room, every error code, gone-connection cleanup."""

from __future__ import annotations

import json
import time
from operator import itemgetter
from typing import Any
from unittest.mock import Mock

import pytest
from botocore.exceptions import ClientError

from tests.support.records import MESSAGES_TABLE, TABLE, table_items
from tests.unit.chat_driver import Chat, cid

SENDER = cid("sender")
BOB = cid("bob")


@pytest.fixture
def chat(chat: Chat) -> Chat:
    chat.put(SENDER, "general", "alice", name="Alice")
    return chat


def say(chat: Chat, body: Any, connection_id: str = SENDER) -> Any:
    return chat.send(connection_id, body, "send_message")


def test_send_message_reaches_everyone_in_the_room_sender_included(chat: Chat) -> None:
    chat.put(BOB, "general")
    carol, dave = chat.put(cid("carol"), "general"), chat.put(cid("dave"), "other")
    assert say(chat, {"action": "sendMessage", "room_id": "general", "message": "Hello"})["statusCode"] == 200
    frames = [frame for member in (SENDER, BOB, carol) for frame in chat.frames(member)]
    assert [len(chat.frames(member)) for member in (SENDER, BOB, carol)] == [1, 1, 1]
    fields = itemgetter("action", "room_id", "user_id", "name", "message")
    assert [fields(frame) for frame in frames] == [("message", "general", "alice", "Alice", "Hello")] * 3
    assert all(f["timestamp"].endswith("Z") and len(f["timestamp"]) == 20 for f in frames)
    assert len({frame["message_id"] for frame in frames}) == 1
    assert chat.frames(dave) == []


def test_send_message_without_room_uses_the_connections_room(chat: Chat) -> None:
    say(chat, {"action": "sendMessage", "message": "hi"})
    assert chat.frames(SENDER)[0]["room_id"] == "general"


def test_send_message_unique_ids_per_message(chat: Chat) -> None:
    say(chat, {"action": "sendMessage", "message": "one"})
    say(chat, {"action": "sendMessage", "message": "two"})
    frames = chat.frames(SENDER)
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
        ("{", "invalid_json"),
        ({"action": "sendMessage", "message": "x" * 5000}, "message_too_large"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_send_message_refusals_go_to_sender_only_and_broadcast_nothing(
    chat: Chat, body: Any, code: str
) -> None:
    chat.put(BOB, "general")
    assert say(chat, body)["statusCode"] == 200
    [frame] = chat.frames(SENDER)  # parsed: a JSON object
    assert (frame["action"], frame["code"]) == ("error", code)
    assert isinstance(frame["message"], str) and frame["message"]
    assert "Traceback" not in frame["message"]
    assert code != "message_too_large" or "4,096" in frame["message"]  # the limit, named
    assert chat.frames(BOB) == []


def test_send_message_at_exactly_the_limit_is_delivered(chat: Chat) -> None:
    say(chat, {"action": "sendMessage", "message": "\u00e9" * 2048})  # 4096 bytes
    assert chat.frames(SENDER)[0]["action"] == "message"


def test_send_message_from_unregistered_connection_is_refused(chat: Chat) -> None:
    ghost = cid("ghost")
    chat.api.live.add(ghost)
    say(chat, {"action": "sendMessage", "message": "hi"}, ghost)
    assert chat.frames(ghost)[0]["code"] == "forbidden_room"
    assert chat.frames(SENDER) == []


def test_send_message_skips_expired_records(chat: Chat) -> None:
    old = chat.put(cid("old"), "general", ttl=int(time.time()) - 1)
    say(chat, {"action": "sendMessage", "message": "hi"})
    assert chat.api.attempts.get(old, 0) == 0


def test_send_message_deletes_exactly_the_gone_connection(chat: Chat) -> None:
    chat.put(cid("gone"), "general", live=False)  # the fake answers 410
    chat.put(BOB, "general")
    say(chat, {"action": "sendMessage", "message": "hi"})
    assert chat.record_ids() == {SENDER, BOB}


@pytest.mark.parametrize("status", [403, 413, 429, 500])
def test_send_message_other_errors_delete_nothing(chat: Chat, status: int) -> None:
    flaky = chat.put(cid("flaky"), "general", live=False)
    chat.api.scripts[flaky] = [status] * 10
    say(chat, {"action": "sendMessage", "message": "hi"})
    assert flaky in chat.record_ids()
    assert chat.api.attempts[flaky] == (3 if status in (429, 500) else 1)  # retried: 429 and 500


@pytest.mark.parametrize("status", [429, 500])
def test_send_message_transient_errors_are_retried_until_delivered(chat: Chat, status: int) -> None:
    flaky = chat.put(cid("flaky"), "general")
    chat.api.scripts[flaky] = [status, status]
    say(chat, {"action": "sendMessage", "message": "hi"})
    assert [f["message"] for f in chat.frames(flaky)] == ["hi"]


def test_send_message_reads_every_page_of_a_large_room(chat: Chat) -> None:
    # Seed defect 4: one Query page only. 50 items a page makes 130 members span 3 pages.
    members = chat.crowd("general", 129)
    send = chat.function("send_message")
    send.store.page_size = 50
    assert send.store.room_members("general").pages == 3
    say(chat, {"action": "sendMessage", "message": "to all"})
    assert all(chat.frames(member) for member in [*members, SENDER])


def test_send_message_internal_error_sends_internal_frame_without_trace(chat: Chat) -> None:
    chat.dynamodb.delete_table(TableName=TABLE)
    assert say(chat, {"action": "sendMessage", "message": "hi"})["statusCode"] == 500
    [frame] = chat.frames(SENDER)
    assert frame == {"action": "error", "code": "internal", "message": frame["message"]}
    assert "ResourceNotFound" not in frame["message"] and "Traceback" not in frame["message"]


def test_send_message_rate_limit_allows_burst_then_refuses(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_BURST", "3")
    now = [time.time()]
    chat.function("send_message").limiter._clock = lambda: now[0]
    for i in range(5):
        say(chat, {"action": "sendMessage", "message": f"m{i}"})
    frames = chat.frames(SENDER)
    assert [f.get("message") for f in frames[:3]] == ["m0", "m1", "m2"]
    # Told once per window; the next refused frame is dropped without an answer.
    assert [f["code"] for f in frames[3:]] == ["rate_limited"]
    now[0] += 1.0  # one token refilled
    say(chat, {"action": "sendMessage", "message": "later"})
    assert chat.frames(SENDER)[-1]["message"] == "later"


def test_send_message_rate_limit_zero_disables_it(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "0")
    for i in range(30):
        say(chat, {"action": "sendMessage", "message": f"m{i}"})
    assert all(f["action"] == "message" for f in chat.frames(SENDER))


# --- stored before sent: acks, idempotent client_msg_id, retention ------------------------------------


def test_send_message_acks_the_sender_once_stored_then_broadcasts(chat: Chat) -> None:
    chat.put(BOB, "general", "bob")
    send = chat.function("send_message")
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
    management = send.sender.client(chat.api.endpoint_url)
    post = management.post_to_connection

    def watching_post(*, ConnectionId: str, Data: bytes) -> Any:
        events.append(f"post {json.loads(Data)['action']} to {ConnectionId}")
        return post(ConnectionId=ConnectionId, Data=Data)

    send.messages._client = WatchingClient()
    management.post_to_connection = watching_post
    say(chat, {"action": "sendMessage", "message": "Hello", "client_msg_id": "c-7f3a"})
    ack, message = chat.frames(SENDER)
    [stored] = chat.stored()
    assert events[:2] == ["transact_write_items returned", f"post ack to {SENDER}"]
    assert sorted(events[2:]) == [f"post message to {BOB}", f"post message to {SENDER}"]
    message_id = stored["message_id"]["S"]
    assert ack == {"action": "ack", "client_msg_id": "c-7f3a", "message_id": message_id, "room_id": "general"}
    assert message["action"] == "message" and message["message_id"] == ack["message_id"]
    assert message["client_msg_id"] == "c-7f3a"
    assert chat.frames(BOB) == [message]


def test_send_message_without_client_msg_id_is_stored_and_not_acked(chat: Chat) -> None:
    say(chat, {"action": "sendMessage", "message": "Hello"})
    [message] = chat.frames(SENDER)
    assert message["action"] == "message" and "client_msg_id" not in message
    [stored] = chat.stored()
    assert stored["message_id"]["S"] == message["message_id"]


def test_send_message_failed_store_broadcasts_nothing_and_tells_internal(chat: Chat) -> None:
    chat.put(BOB, "general", "bob")
    messages = chat.function("send_message").messages
    messages._client = failing = Mock(wraps=messages._client)  # its writes fail as a throttled table's do
    error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
    failing.put_item.side_effect = ClientError(error, "PutItem")
    failing.transact_write_items.side_effect = ClientError(error, "TransactWriteItems")
    for body in (
        {"action": "sendMessage", "message": "Hello", "client_msg_id": "c-1"},
        {"action": "sendMessage", "message": "Hello"},
    ):
        chat.api.reset()
        assert say(chat, body)["statusCode"] == 500
        [frame] = chat.frames(SENDER)
        assert frame["action"] == "error" and frame["code"] == "internal"
        assert "Throughput" not in frame["message"]
        assert chat.frames(BOB) == []
    assert chat.stored() == []


def test_send_message_repeated_client_msg_id_stores_once_and_rebroadcasts_the_same_id(chat: Chat) -> None:
    chat.put(BOB, "general", "bob")
    for _ in range(3):
        say(chat, {"action": "sendMessage", "message": "Hello", "client_msg_id": "retry-1"})
    received = chat.frames(BOB)
    [stored] = chat.stored()
    first_id = stored["message_id"]["S"]
    assert [a["message_id"] for a in chat.frames(SENDER, "ack")] == [first_id] * 3
    assert [m["message_id"] for m in received] == [first_id] * 3
    assert received[0] == received[1] == received[2]


def test_send_message_repeat_with_other_text_broadcasts_the_first_message(chat: Chat) -> None:
    say(chat, {"action": "sendMessage", "message": "first", "client_msg_id": "c-9"})
    say(chat, {"action": "sendMessage", "message": "second", "client_msg_id": "c-9"})
    assert chat.messages(SENDER) == [("general", "first"), ("general", "first")]
    assert len(chat.stored()) == 1


@pytest.mark.parametrize(
    "user", ["bob", "alice"], ids=["another-user-another-message", "same-user-same-message"]
)
def test_send_message_client_msg_id_is_the_users(chat: Chat, user: str) -> None:
    other = chat.put(cid("other"), "general", user)  # another user's, or another tab of alice's
    say(chat, {"action": "sendMessage", "message": "from alice", "client_msg_id": "c-1"})
    say(chat, {"action": "sendMessage", "message": f"from {user}", "client_msg_id": "c-1"}, other)
    texts = sorted({"from alice", f"from {user}"})
    assert sorted(i["message"]["S"] for i in chat.stored()) == texts
    assert len({f["message_id"] for member in (SENDER, other) for f in chat.frames(member, "ack")}) == len(
        texts
    )


def test_send_message_is_kept_for_the_retention_period(chat: Chat) -> None:
    before = int(time.time())
    say(chat, {"action": "sendMessage", "message": "kept", "client_msg_id": "c-3"})
    after = int(time.time())
    items = chat.dynamodb.scan(TableName=MESSAGES_TABLE, ConsistentRead=True)["Items"]
    assert {i["room_id"]["S"] for i in items} >= {"general", "client#alice"}
    for item in items:
        if not item["room_id"]["S"].startswith("rate#"):
            assert before + 7 * 86400 <= int(item["ttl"]["N"]) <= after + 7 * 86400, item


def test_send_message_retention_days_from_the_environment(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGE_RETENTION_DAYS", "30")
    say(chat, {"action": "sendMessage", "message": "kept"})
    [stored] = chat.stored()
    assert abs(int(stored["ttl"]["N"]) - (time.time() + 30 * 86400)) < 5


@pytest.mark.parametrize("value", ["", "x" * 65, "has space", "é", 7, None, ["a"], "a/b"])
def test_send_message_bad_client_msg_id_is_invalid_request(chat: Chat, value: Any) -> None:
    say(chat, {"action": "sendMessage", "message": "hi", "client_msg_id": value})
    frames = chat.frames(SENDER)
    if value is None:  # null: as if absent
        assert frames[0]["action"] == "message"
        return
    assert [f["code"] for f in frames] == ["invalid_request"]
    assert chat.stored() == []


def test_send_message_invalid_request_ranks_after_invalid_message_before_too_large(chat: Chat) -> None:
    say(chat, {"action": "sendMessage", "message": "", "client_msg_id": "bad id"})
    say(chat, {"action": "sendMessage", "message": "x" * 5000, "client_msg_id": "bad id"})
    say(chat, {"action": "sendMessage", "room_id": "other", "message": "x", "client_msg_id": "bad id"})
    codes = [f["code"] for f in chat.frames(SENDER)]
    assert codes == ["invalid_message", "invalid_request", "forbidden_room"]


def test_send_message_ids_sort_in_store_order(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    # 30 sends in well under a second would trip the default per-user limit (bursts of 20, 10 a second).
    monkeypatch.setenv("RATE_LIMIT_BURST", "30")
    for i in range(30):
        say(chat, {"action": "sendMessage", "message": f"m{i}"})
    ids = [f["message_id"] for f in chat.frames(SENDER)]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert {len(i) for i in ids} == {26}


def test_send_message_client_msg_id_reused_in_another_room_is_refused_not_posted_there(chat: Chat) -> None:
    other_tab = chat.put(cid("alice2"), "random", "alice", name="Alice")
    say(chat, {"action": "sendMessage", "message": "in general", "client_msg_id": "c-1"})
    chat.api.reset()
    say(chat, {"action": "sendMessage", "message": "in random", "client_msg_id": "c-1"}, other_tab)
    [error] = chat.frames(other_tab)
    assert error["action"] == "error" and error["code"] == "invalid_request"
    assert chat.frames(SENDER) == []  # general's message is not re-broadcast from random
    assert chat.stored("random") == []


def test_send_message_put_retried_after_a_lost_answer_is_stored_once(chat: Chat) -> None:
    messages = chat.function("send_message").messages
    real = messages._client

    def put_item(**kwargs: Any) -> Any:
        """The first attempt lands but its answer is lost; botocore's retry then meets its own item."""
        real.put_item(**{k: v for k, v in kwargs.items() if k != "ReturnValuesOnConditionCheckFailure"})
        return real.put_item(**kwargs)

    messages._client = Mock(wraps=real, put_item=Mock(side_effect=put_item))
    say(chat, {"action": "sendMessage", "message": "hello"})
    messages._client = real
    assert [m["message"]["S"] for m in chat.stored()] == ["hello"]


# 29,300 control characters: 29,300 bytes of text, each escaped as \u0001 in the frame (about 176 KB).
CONTROL_TEXT = "\x01" * 29_300
# 40,000 "é": 80,000 bytes of text and of frame, but each is \u00e9 in a shard job (about 240 KB).
ACCENTED_TEXT = "\u00e9" * 40_000


@pytest.mark.parametrize(
    ("max_bytes", "text", "sharded", "names"),
    [("32768", CONTROL_TEXT, False, "131,072"), ("131072", ACCENTED_TEXT, True, "shard job")],
    ids=["frame-over-a-post", "job-over-sqs"],
)
def test_a_message_whose_frame_cannot_be_delivered_is_refused_before_it_is_stored(
    chat: Chat,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
    max_bytes: str,
    text: str,
    sharded: bool,
    names: str,
) -> None:
    monkeypatch.setenv("MAX_MESSAGE_BYTES", max_bytes)
    if not sharded:
        monkeypatch.delenv("FANOUT_QUEUE_URL")
    chat.put(BOB, "general")
    assert len(text.encode()) <= int(max_bytes)  # the text alone passes the message limit
    assert (
        say(chat, {"action": "sendMessage", "message": text, "client_msg_id": "big-1"})["statusCode"] == 200
    )
    [frame] = chat.frames(SENDER)
    assert (frame["action"], frame["code"]) == ("error", "message_too_large")
    assert names in frame["message"]
    assert chat.frames(BOB) == []
    assert [i for i in table_items(chat.dynamodb, MESSAGES_TABLE) if "message" in i] == []
