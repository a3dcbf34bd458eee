"""Attacks on the token carried as a subprotocol (``["chat.v1", "bearer.<JWT>"]``) at ``$connect``: refused
offers get the contract status and store nothing; accepted ones only ever echo a protocol the client
offered, never the bearer entry (that would put the token in a response header)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

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


class Offer(NamedTuple):
    """What ``$connect`` gets: the protocols offered (made when the test runs), the query besides
    ``room_id=general``, the header's name; and the expected status (refused) or echo (accepted)."""

    expected: int | str
    protocols: Callable[[], str]
    query: dict[str, str] = {}
    header: str = HEADER


ATTACKS: dict[str, Offer] = {
    "bearer-garbage": Offer(401, lambda: "chat.v1, bearer.garbage"),
    "bearer-expired": Offer(401, lambda: f"chat.v1, bearer.{make_token(expires_in=-5)}"),
    "bearer-alg-none": Offer(401, lambda: f"chat.v1, bearer.{none_token()}"),
    "bearer-wrong-secret": Offer(
        401, lambda: f"chat.v1, bearer.{make_token(secret='another-secret-that-is-32-bytes-long!')}"
    ),
    "bearer-empty": Offer(401, lambda: "chat.v1, bearer."),
    "only-bearer-garbage": Offer(401, lambda: "bearer.garbage"),
    "only-bearer-alg-none": Offer(401, lambda: f"bearer.{none_token()}"),
    "bearer-8kb": Offer(401, lambda: f"chat.v1, bearer.{make_token(pad='x' * 8200)}"),
    "bearer-capitalised-is-not-a-bearer": Offer(401, lambda: f"chat.v1, Bearer.{good()}"),
    "first-bearer-bad-second-good": Offer(401, lambda: f"chat.v1, bearer.garbage, bearer.{good()}"),
    # A browser fails a handshake that chooses none of its offered subprotocols, and echoing the bearer
    # entry would echo the token: refuse before storing a record nobody can use.
    "only-bearer-valid": Offer(400, lambda: f"bearer.{good()}"),
    "bad-query-token-does-not-fall-back-to-bearer": Offer(
        401, lambda: f"chat.v1, bearer.{good()}", {"token": "garbage"}
    ),
    "lowercase-header-bad-bearer": Offer(401, lambda: "chat.v1, bearer.garbage", header=HEADER.lower()),
    "no-spaces-bad-bearer": Offer(401, lambda: "chat.v1,bearer.garbage"),
    "bearer-valid-room-outside-rooms-claim": Offer(
        403, lambda: f"chat.v1, bearer.{make_token('bob', rooms=['support'])}"
    ),
    "bearer-valid-user_id-other-than-sub": Offer(
        403, lambda: f"chat.v1, bearer.{good()}", {"user_id": "mallory"}
    ),
    "bearer-valid-bad-room": Offer(400, lambda: f"chat.v1, bearer.{good()}", {"room_id": "bad room"}),
}

# Offers that must be accepted: the echo is a protocol the client offered, never the bearer entry.
ACCEPTED: dict[str, Offer] = {
    "chat-then-bearer": Offer("chat.v1", lambda: f"chat.v1, bearer.{good()}"),
    "bearer-then-chat": Offer("chat.v1", lambda: f"bearer.{good()}, chat.v1"),
    "lowercase-header-name": Offer("chat.v1", lambda: f"chat.v1, bearer.{good()}", header=HEADER.lower()),
    "bearer-and-another-protocol": Offer("other.v2", lambda: f"bearer.{good()}, other.v2"),
}


def handshake(offer: Offer) -> tuple[dict[str, str], dict[str, str]]:
    return {"room_id": "general", **offer.query}, {offer.header: offer.protocols()}


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
    status, (query, headers) = ATTACKS[name].expected, handshake(ATTACKS[name])
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
    expected, (query, headers) = ACCEPTED[name].expected, handshake(ACCEPTED[name])
    response = connect.handler(connect_event(query, headers=headers), FakeContext())
    echoed = response.get("headers", {}).get(HEADER)
    offered = [p.strip() for value in headers.values() for p in value.split(",")]
    leaked = leaks(captured.lines(), offered_tokens({}, headers))
    bearer_echoed = int(echoed is not None and "bearer" in echoed.lower())
    summary.record("subprotocol", bearer_echoed=bearer_echoed, token_leaks=leaked)
    assert response["statusCode"] == 200
    assert echoed == expected
    assert echoed is None or echoed in offered
    assert [r["user_id"]["S"] for r in records(dynamodb)] == ["bob"]
    assert leaked == 0
