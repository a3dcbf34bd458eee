"""docs/protocol.md sections 3-5 through the local stack and the real functions, as a CLI client sees them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from local_stack import Stack

from .helpers import aws_client, connect, handshake_status, wait_until

pytestmark = pytest.mark.timeout(120)


def open_client(stack: Stack, user: str, room: str, **extra: str) -> ClientConnection:
    query = "&".join(f"{k}={v}" for k, v in {"token": stack.token(user), "room_id": room, **extra}.items())
    return connect(f"{stack.ws_url}?{query}", open_timeout=30)


def frame(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not presence (members who connect after ``ws`` announce themselves)."""
    for _ in range(20):
        got: dict[str, Any] = json.loads(ws.recv(timeout=20))
        if got.get("action") != "presence":
            return got
    raise AssertionError("only presence frames arrived")


def status_of(stack: Stack, query: str) -> int:
    return handshake_status(f"{stack.ws_url}?{query}", open_timeout=30)[0]


def test_contract_handshake_statuses(chat_stack: Stack) -> None:
    token = chat_stack.token("alice")
    limited = chat_stack.token("alice", room="support")
    assert status_of(chat_stack, "room_id=general") == 401
    assert status_of(chat_stack, "token=not-a-jwt&room_id=general") == 401
    assert status_of(chat_stack, f"token={token}") == 400
    assert status_of(chat_stack, f"token={token}&room_id=bad%20room") == 400
    assert status_of(chat_stack, f"token={token}&room_id=general&user_id=mallory") == 403
    assert status_of(chat_stack, f"token={limited}&room_id=general") == 403


def test_contract_broadcast_reaches_the_room_only(chat_stack: Stack) -> None:
    with (
        open_client(chat_stack, "alice", "c-room", user_id="alice") as alice,
        open_client(chat_stack, "bob", "c-room") as bob,
        open_client(chat_stack, "eve", "c-elsewhere") as eve,
    ):
        alice.send(json.dumps({"action": "sendMessage", "room_id": "c-room", "message": "Hello"}))
        got = [frame(alice), frame(bob)]
        assert got[0] == got[1]
        assert got[0]["user_id"] == "alice" and got[0]["room_id"] == "c-room" and got[0]["message"] == "Hello"
        with pytest.raises(TimeoutError):
            eve.recv(timeout=1)


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("hello", "invalid_json"),
        (json.dumps({"action": "joinRoom"}), "unknown_action"),
        (json.dumps({"action": "sendMessage", "room_id": "other", "message": "hi"}), "forbidden_room"),
        (json.dumps({"action": "sendMessage", "message": "  "}), "invalid_message"),
        (json.dumps({"action": "sendMessage", "message": "x" * 4097}), "message_too_large"),
    ],
)
def test_contract_error_frames_go_to_the_sender_only(chat_stack: Stack, sent: str, code: str) -> None:
    with open_client(chat_stack, "alice", "e-room") as alice, open_client(chat_stack, "bob", "e-room") as bob:
        alice.send(sent)
        error = frame(alice)
        assert error["action"] == "error" and error["code"] == code and error["message"]
        with pytest.raises(TimeoutError):
            bob.recv(timeout=1)
        alice.send(json.dumps({"action": "sendMessage", "message": "still open"}))
        assert frame(alice)["message"] == "still open"


def test_contract_connection_record_and_management_api(chat_stack: Stack) -> None:
    dynamodb = aws_client("dynamodb", chat_stack.dynamodb_endpoint)
    api = aws_client("apigatewaymanagementapi", chat_stack.callback_url)
    with open_client(chat_stack, "carol", "r-room") as carol:
        carol.send(json.dumps({"action": "sendMessage", "message": "who am I"}))
        frame(carol)
        items = dynamodb.scan(TableName="chat_connections")["Items"]
        [record] = [i for i in items if i["user_id"]["S"] == "carol" and i["room_id"]["S"] == "r-room"]
        connection_id = record["connection_id"]["S"]
        assert len(connection_id) == 16 and "ttl" in record and record["created_at"]["S"].endswith("Z")
        assert "ConnectedAt" in api.get_connection(ConnectionId=connection_id)
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"late")
    key = {"connection_id": {"S": connection_id}}
    assert wait_until(lambda: "Item" not in dynamodb.get_item(TableName="chat_connections", Key=key))
