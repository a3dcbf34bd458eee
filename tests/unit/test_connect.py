"""$connect: every row of docs/protocol.md section 3's handshake table, and nothing stored when refused."""

from __future__ import annotations

import time
from typing import Any

import pytest

from local_stack.testing import FakeContext, make_token
from tests.conftest import load_function
from tests.support.events import connect_event
from tests.support.records import TABLE, records


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
    assert item["connection_id"]["S"] == "BFHPhfCWIAMCKlQ="
    assert item["room_id"]["S"] == "general"
    assert item["user_id"]["S"] == "alice"
    assert item["name"]["S"] == "Alice"
    ttl = int(item["ttl"]["N"])
    assert before + 2 * 3600 <= ttl <= int(time.time()) + 2 * 3600 + 15 * 60
    assert item["created_at"]["S"].endswith("Z")


def test_connect_user_id_is_the_tokens_sub_never_the_query(connect: Any, dynamodb: Any) -> None:
    # Seed defect 1: the user id came from the query string.
    response = call(connect, {"token": make_token("alice"), "room_id": "general", "user_id": "alice"})
    assert response["statusCode"] == 200
    assert records(dynamodb)[0]["user_id"]["S"] == "alice"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"room_id": "general"}, "missing token"),
        ({"token": "", "room_id": "general"}, "missing token"),
        ({"token": "not.a.jwt", "room_id": "general"}, "invalid token"),
        ({"token": "garbage", "room_id": "general"}, "invalid token"),
        (
            {"token": make_token(secret="another-secret-of-at-least-32-bytes!!"), "room_id": "general"},
            "invalid",
        ),
        ({"token": make_token(expires_in=-10), "room_id": "general"}, "expired"),
        ({"token": make_token(sub=None), "room_id": "general"}, "invalid"),
        ({"token": make_token(sub=""), "room_id": "general"}, "invalid"),
        ({"token": make_token(algorithm="HS512"), "room_id": "general"}, "invalid"),
    ],
    ids=[
        "absent",
        "empty",
        "malformed",
        "garbage",
        "bad-signature",
        "expired",
        "no-sub",
        "empty-sub",
        "wrong-alg",
    ],
)
def test_connect_bad_token_is_401_and_stores_nothing(
    connect: Any, dynamodb: Any, query: dict[str, str], reason: str
) -> None:
    response = call(connect, query)
    assert response["statusCode"] == 401
    assert reason in response["body"]
    assert records(dynamodb) == []


def test_connect_without_query_string_is_401(connect: Any, dynamodb: Any) -> None:
    assert call(connect, None)["statusCode"] == 401
    assert records(dynamodb) == []


@pytest.mark.parametrize(
    "room", [None, "", "has space", "x" * 65, "general\n", "caf\u00e9", "a/b", "<script>"]
)
def test_connect_missing_or_invalid_room_is_400(connect: Any, dynamodb: Any, room: str | None) -> None:
    query = {"token": make_token()}
    if room is not None:
        query["room_id"] = room
    response = call(connect, query)
    assert response["statusCode"] == 400
    assert "room_id" in response["body"]
    assert records(dynamodb) == []


@pytest.mark.parametrize("room", ["general", "a", "x" * 64, "team-1.dev:ops_2"])
def test_connect_accepts_every_room_the_pattern_allows(connect: Any, dynamodb: Any, room: str) -> None:
    assert call(connect, {"token": make_token(), "room_id": room})["statusCode"] == 200


def test_connect_user_id_other_than_sub_is_403(connect: Any, dynamodb: Any) -> None:
    response = call(connect, {"token": make_token("alice"), "room_id": "general", "user_id": "mallory"})
    assert response["statusCode"] == 403
    assert records(dynamodb) == []


def test_connect_room_outside_rooms_claim_is_403(connect: Any, dynamodb: Any) -> None:
    token = make_token("alice", rooms=["support"])
    assert call(connect, {"token": token, "room_id": "general"})["statusCode"] == 403
    assert records(dynamodb) == []
    assert call(connect, {"token": token, "room_id": "support"})["statusCode"] == 200


def test_connect_checks_run_in_contract_order(connect: Any, dynamodb: Any) -> None:
    # Bad token and bad room: 401 first. Bad room and foreign user_id: 400 before 403.
    assert call(connect, {"token": "garbage", "room_id": "bad room"})["statusCode"] == 401
    assert (
        call(connect, {"token": make_token("a"), "room_id": "bad room", "user_id": "b"})["statusCode"] == 400
    )


def test_connect_token_in_subprotocol_header_echoes_chat_protocol(connect: Any, dynamodb: Any) -> None:
    token = make_token("bob")
    response = call(
        connect, {"room_id": "general"}, headers={"Sec-WebSocket-Protocol": f"chat.v1, bearer.{token}"}
    )
    assert response["statusCode"] == 200
    assert response["headers"] == {"Sec-WebSocket-Protocol": "chat.v1"}
    assert records(dynamodb)[0]["user_id"]["S"] == "bob"


def test_connect_refusal_body_never_echoes_the_token(connect: Any, dynamodb: Any) -> None:
    token = make_token(expires_in=-5)
    response = call(connect, {"token": token, "room_id": "general"})
    assert token not in response["body"]


def test_connect_failed_write_refuses_the_connection(connect: Any, dynamodb: Any) -> None:
    dynamodb.delete_table(TableName=TABLE)
    with pytest.raises(Exception, match="ResourceNotFound"):
        call(connect, {"token": make_token(), "room_id": "general"})


def test_connect_sub_that_cannot_be_stored_is_401_not_502(connect: Any, dynamodb: Any) -> None:
    # A lone surrogate passes JSON decoding but not UTF-8 encoding: it used to fail the write (a 502).
    response = call(connect, {"token": make_token("alice\ud800"), "room_id": "general"})
    assert response["statusCode"] == 401
    assert records(dynamodb) == []


def test_connect_without_time_for_the_write_and_its_undo_refuses(connect: Any, dynamodb: Any) -> None:
    # One attempt may take 3 s (1 s connect + 2 s read timeout) and 3 s stay reserved for the delete that
    # undoes a lost write: with 0.5 s of margin, 6 s left is too little to start.
    event = connect_event({"token": make_token(), "room_id": "general"})
    with pytest.raises(Exception, match="deadline"):
        connect.handler(event, FakeContext(seconds=6.0))
    assert records(dynamodb) == []
    assert call(connect, {"token": make_token(), "room_id": "general"})["statusCode"] == 200


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
        call(connect, {"token": make_token(), "room_id": "general"})
    assert records(dynamodb) == []
