"""Attacks on the token carried as a subprotocol (``["chat.v1", "bearer.<JWT>"]``) at ``$connect``.

Refused offers get the contract status and store nothing; accepted ones never echo the bearer entry (that
would put the token in a response header) and only ever echo a protocol the client offered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from local_stack.testing import FakeContext, make_token
from tests.conftest import load_function
from tests.reliability import summary
from tests.reliability.conftest import Captured
from tests.reliability.helpers import leaks, unsigned
from tests.support.events import connect_event
from tests.support.records import records

HEADER = "Sec-WebSocket-Protocol"


def good() -> str:
    return make_token("bob")


def none_token() -> str:
    return unsigned({"alg": "none"}, {"sub": "bob", "exp": int(time.time()) + 600})


# name -> (query without token, protocol header value(s), expected status)
ATTACKS: dict[str, Callable[[], tuple[dict[str, str], dict[str, str], int]]] = {
    "bearer-garbage": lambda: ({"room_id": "general"}, {HEADER: "chat.v1, bearer.garbage"}, 401),
    "bearer-expired": lambda: (
        {"room_id": "general"},
        {HEADER: f"chat.v1, bearer.{make_token(expires_in=-5)}"},
        401,
    ),
    "bearer-alg-none": lambda: ({"room_id": "general"}, {HEADER: f"chat.v1, bearer.{none_token()}"}, 401),
    "bearer-wrong-secret": lambda: (
        {"room_id": "general"},
        {HEADER: f"chat.v1, bearer.{make_token(secret='another-secret-that-is-32-bytes-long!')}"},
        401,
    ),
    "bearer-empty": lambda: ({"room_id": "general"}, {HEADER: "chat.v1, bearer."}, 401),
    "only-bearer-garbage": lambda: ({"room_id": "general"}, {HEADER: "bearer.garbage"}, 401),
    "only-bearer-alg-none": lambda: ({"room_id": "general"}, {HEADER: f"bearer.{none_token()}"}, 401),
    "bearer-8kb": lambda: (
        {"room_id": "general"},
        {HEADER: f"chat.v1, bearer.{make_token(pad='x' * 8200)}"},
        401,
    ),
    "bearer-capitalised-is-not-a-bearer": lambda: (
        {"room_id": "general"},
        {HEADER: f"chat.v1, Bearer.{good()}"},
        401,
    ),
    "first-bearer-bad-second-good": lambda: (
        {"room_id": "general"},
        {HEADER: f"chat.v1, bearer.garbage, bearer.{good()}"},
        401,
    ),
    # A browser fails a handshake that chooses none of its offered subprotocols, and echoing the bearer
    # entry would echo the token: refuse before storing a record nobody can use.
    "only-bearer-valid": lambda: ({"room_id": "general"}, {HEADER: f"bearer.{good()}"}, 400),
    "bad-query-token-does-not-fall-back-to-bearer": lambda: (
        {"room_id": "general", "token": "garbage"},
        {HEADER: f"chat.v1, bearer.{good()}"},
        401,
    ),
    "lowercase-header-bad-bearer": lambda: (
        {"room_id": "general"},
        {HEADER.lower(): "chat.v1, bearer.garbage"},
        401,
    ),
    "no-spaces-bad-bearer": lambda: ({"room_id": "general"}, {HEADER: "chat.v1,bearer.garbage"}, 401),
    "bearer-valid-room-outside-rooms-claim": lambda: (
        {"room_id": "general"},
        {HEADER: f"chat.v1, bearer.{make_token('bob', rooms=['support'])}"},
        403,
    ),
    "bearer-valid-user_id-other-than-sub": lambda: (
        {"room_id": "general", "user_id": "mallory"},
        {HEADER: f"chat.v1, bearer.{good()}"},
        403,
    ),
    "bearer-valid-bad-room": lambda: ({"room_id": "bad room"}, {HEADER: f"chat.v1, bearer.{good()}"}, 400),
}

# Offers that must be accepted: the echo is a protocol the client offered, never the bearer entry.
ACCEPTED: dict[str, Callable[[], tuple[dict[str, str], str | None]]] = {
    "chat-then-bearer": lambda: ({HEADER: f"chat.v1, bearer.{good()}"}, "chat.v1"),
    "bearer-then-chat": lambda: ({HEADER: f"bearer.{good()}, chat.v1"}, "chat.v1"),
    "lowercase-header-name": lambda: ({HEADER.lower(): f"chat.v1, bearer.{good()}"}, "chat.v1"),
    "bearer-and-another-protocol": lambda: ({HEADER: f"bearer.{good()}, other.v2"}, "other.v2"),
}


@pytest.fixture
def connect(dynamodb: Any) -> Any:
    return load_function("connect")


def offered_tokens(query: dict[str, str], headers: dict[str, str]) -> list[str]:
    tokens = [query["token"]] if query.get("token") else []
    for value in headers.values():
        tokens += [p.strip()[len("bearer.") :] for p in value.split(",") if "earer." in p]
    return [t for t in tokens if t]


@pytest.mark.parametrize("name", list(ATTACKS))
def test_subprotocol_attack_is_refused(connect: Any, dynamodb: Any, captured: Captured, name: str) -> None:
    query, headers, status = ATTACKS[name]()
    response = connect.handler(connect_event(query, headers=headers), FakeContext())
    stored = len(records(dynamodb))
    echoed = response.get("headers", {}).get(HEADER, "")
    leaked = leaks(captured.lines(), offered_tokens(query, headers))
    summary.record(
        "subprotocol",
        attacks=1,
        refused=int(response["statusCode"] == status and stored == 0),
        records_written=stored,
        bearer_echoed=int("bearer" in echoed.lower()),
        token_leaks=leaked,
    )
    assert response["statusCode"] == status, response
    assert stored == 0
    assert "headers" not in response or HEADER not in response["headers"]  # a refusal negotiates nothing
    assert leaked == 0


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_subprotocol_accepted_offer_never_echoes_the_bearer(
    connect: Any, dynamodb: Any, captured: Captured, name: str
) -> None:
    headers, expected = ACCEPTED[name]()
    response = connect.handler(connect_event({"room_id": "general"}, headers=headers), FakeContext())
    echoed = response.get("headers", {}).get(HEADER)
    offered = [p.strip() for value in headers.values() for p in value.split(",")]
    summary.record(
        "subprotocol",
        bearer_echoed=int(echoed is not None and "bearer" in echoed.lower()),
        token_leaks=leaks(captured.lines(), offered_tokens({}, headers)),
    )
    assert response["statusCode"] == 200
    assert echoed == expected
    assert echoed is None or echoed in offered
    assert [r["user_id"]["S"] for r in records(dynamodb)] == ["bob"]
    assert leaks(captured.lines(), offered_tokens({}, headers)) == 0
