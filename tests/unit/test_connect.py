"""$connect: every row of docs/protocol.md section 3's handshake table, and nothing stored when refused."""

from __future__ import annotations

import time
from typing import Any

import pytest

from local_stack.testing import FakeContext, make_token
from tests.conftest import load_function
from tests.support.events import connect_event
from tests.support.records import TABLE, records


def day_token(sub: Any = "alice", **claims: Any) -> str:
    """A token made at collection, valid a day: however long the suite runs before its row."""
    return make_token(sub, expires_in=24 * 3600, **claims)


TOKEN = day_token()


@pytest.fixture
def connect(dynamodb: Any) -> Any:
    return load_function("connect")


def call(module: Any, query: dict[str, str] | None, **kwargs: Any) -> dict[str, Any]:
    return module.handler(connect_event(query, **kwargs), FakeContext())


def test_connect_valid_token_and_room_stores_connection(connect: Any, dynamodb: Any) -> None:
    before = int(time.time())
    response = call(connect, {"token": make_token("alice", name="Alice"), "room_id": "general"})
    assert response["statusCode"] == 200
    [item] = records(dynamodb)
    stored = (item["connection_id"]["S"], item["room_id"]["S"], item["user_id"]["S"], item["name"]["S"])
    assert stored == ("BFHPhfCWIAMCKlQ=", "general", "alice", "Alice")
    ttl = int(item["ttl"]["N"])
    assert before + 2 * 3600 <= ttl <= int(time.time()) + 2 * 3600 + 15 * 60
    assert item["created_at"]["S"].endswith("Z")


def test_connect_user_id_is_the_tokens_sub_never_the_query(connect: Any, dynamodb: Any) -> None:
    # Seed defect 1: the user id came from the query string.
    response = call(connect, {"token": make_token("alice"), "room_id": "general", "user_id": "alice"})
    assert response["statusCode"] == 200
    assert records(dynamodb)[0]["user_id"]["S"] == "alice"


def refusal(query: dict[str, str] | None, status: int, reason: str, id: str) -> Any:
    return pytest.param(query, status, reason, id=id)


def bad_room(room: str | None, id: str) -> Any:
    query = {"token": TOKEN} if room is None else {"token": TOKEN, "room_id": room}
    return refusal(query, 400, "room_id", id)


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        refusal({"room_id": "general"}, 401, "missing token", "absent"),
        refusal({"token": "", "room_id": "general"}, 401, "missing token", "empty"),
        refusal({"token": "not.a.jwt", "room_id": "general"}, 401, "invalid token", "malformed"),
        refusal({"token": "garbage", "room_id": "general"}, 401, "invalid token", "garbage"),
        refusal(
            {"token": day_token(secret="another-secret-of-at-least-32-bytes!!"), "room_id": "general"},
            401,
            "invalid",
            "bad-signature",
        ),
        refusal({"token": make_token(expires_in=-10), "room_id": "general"}, 401, "expired", "expired"),
        refusal({"token": day_token(None), "room_id": "general"}, 401, "invalid", "no-sub"),
        refusal({"token": day_token(""), "room_id": "general"}, 401, "invalid", "empty-sub"),
        refusal({"token": day_token(algorithm="HS512"), "room_id": "general"}, 401, "invalid", "wrong-alg"),
        # A lone surrogate passes JSON decoding but not UTF-8 encoding: it used to fail the write (a 502).
        refusal({"token": day_token("alice\ud800"), "room_id": "general"}, 401, "invalid", "sub-unstorable"),
        refusal(None, 401, "missing token", "no-query-string"),
        bad_room(None, "room-absent"),
        bad_room("", "room-empty"),
        bad_room("has space", "room-space"),
        bad_room("x" * 65, "room-65-chars"),
        bad_room("general\n", "room-newline"),
        bad_room("caf\u00e9", "room-non-ascii"),
        bad_room("a/b", "room-slash"),
        bad_room("<script>", "room-markup"),
        refusal({"token": TOKEN, "room_id": "general", "user_id": "mallory"}, 403, "user_id", "other-user"),
        refusal(
            {"token": day_token(rooms=["support"]), "room_id": "general"},
            403,
            "does not grant this room",
            "room-outside-rooms-claim",
        ),
        # The documented order: 401 (token) before 400 (room_id) before 403 (user_id).
        refusal({"token": "garbage", "room_id": "bad room"}, 401, "invalid token", "token-before-room"),
        refusal({"token": TOKEN, "room_id": "bad room", "user_id": "b"}, 400, "room_id", "room-before-user"),
    ],
)
def test_connect_refusal_has_its_status_and_reason_and_stores_nothing(
    connect: Any, dynamodb: Any, query: dict[str, str] | None, status: int, reason: str
) -> None:
    response = call(connect, query)
    assert response["statusCode"] == status
    assert reason in response["body"]
    assert "eyJ" not in response["body"]  # never echoes a token (every JWT starts so)
    assert records(dynamodb) == []


@pytest.mark.parametrize(
    ("token", "room"),
    [
        (TOKEN, "general"),
        (TOKEN, "a"),
        (TOKEN, "x" * 64),
        (TOKEN, "team-1.dev:ops_2"),
        (day_token(rooms=["support"]), "support"),
    ],
    ids=["general", "one-char", "64-chars", "every-punctuation", "granted-by-rooms-claim"],
)
def test_connect_accepts_every_room_the_pattern_and_the_token_allow(
    connect: Any, dynamodb: Any, token: str, room: str
) -> None:
    assert call(connect, {"token": token, "room_id": room})["statusCode"] == 200
    assert [item["room_id"]["S"] for item in records(dynamodb)] == [room]


def test_connect_token_in_subprotocol_header_echoes_chat_protocol(connect: Any, dynamodb: Any) -> None:
    token = make_token("bob")
    response = call(
        connect, {"room_id": "general"}, headers={"Sec-WebSocket-Protocol": f"chat.v1, bearer.{token}"}
    )
    assert response["statusCode"] == 200
    assert response["headers"] == {"Sec-WebSocket-Protocol": "chat.v1"}
    assert records(dynamodb)[0]["user_id"]["S"] == "bob"


def test_connect_failed_write_refuses_the_connection(connect: Any, dynamodb: Any) -> None:
    dynamodb.delete_table(TableName=TABLE)
    with pytest.raises(Exception, match="ResourceNotFound"):
        call(connect, {"token": TOKEN, "room_id": "general"})


def test_connect_without_time_for_the_write_and_its_undo_refuses(connect: Any, dynamodb: Any) -> None:
    # One attempt may take 3 s (1 s connect + 2 s read timeout) and 3 s stay reserved for the delete that
    # undoes a lost write: with 0.5 s of margin, 6 s left is too little to start.
    with pytest.raises(Exception, match="deadline"):
        connect.handler(connect_event({"token": TOKEN, "room_id": "general"}), FakeContext(seconds=6.0))
    assert records(dynamodb) == []
    assert call(connect, {"token": TOKEN, "room_id": "general"})["statusCode"] == 200


def test_connect_stored_after_the_deadline_is_refused_and_deleted(
    connect: Any, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(connect.deadline, "clock", lambda: now[0])
    put = connect.store.put

    def late_put(**kwargs: Any) -> Any:
        result = put(**kwargs)
        now[0] += 9.6  # the write landed; its answer came after the deadline (10 s minus 0.5 s margin)
        return result

    monkeypatch.setattr(connect.store, "put", late_put)
    # Refused either by the check after the write or by the guard before the membership's write.
    with pytest.raises(Exception, match="deadline"):
        call(connect, {"token": TOKEN, "room_id": "general"})
    assert records(dynamodb) == []
