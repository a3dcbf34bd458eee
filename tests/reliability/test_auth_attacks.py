"""Token attacks against ``$connect`` (issue 7), HS256 and RS256-via-JWKS, through the connect handler with
moto and every logger captured at DEBUG: each is refused with the status of docs/protocol.md section 3,
writes no record, and leaves the token out of every log line."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from local_stack.testing import SECRET, FakeContext
from local_stack.testing.jwks import KID, Endpoint, RsaKey, http_endpoint, serve_jwks
from shared.observability import logger as powertools_logger
from tests.conftest import load_function
from tests.reliability import summary
from tests.reliability.conftest import Captured
from tests.reliability.helpers import blackhole, closed_port_url, hs_sign, leaks, retamper, unsigned
from tests.support.events import connect_event
from tests.support.records import records

ISSUER = "https://issuer.test/"
AUDIENCE = "chat-api"
ROOM = "general"
JWKS_TIMEOUT = 0.5
# "Within the timeout": one fetch plus the one refresh PyJWKClient may do, and a wide margin for a busy
# two-core machine. A hang would be the JWKS delay (30 s) or more.
JWKS_BOUND_SECONDS = 10 * JWKS_TIMEOUT


# Made on first use: ours (in the JWKS), an impostor's with our kid, an attacker's with a kid of its own.
key, attacker_same_kid, attacker = (cache(partial(RsaKey, kid=kid)) for kid in (KID, KID, "attacker"))
ec_key = cache(partial(ec.generate_private_key, ec.SECP256R1()))

JSON_NULL = object()  # a claim present with the value null


def claims(**changes: Any) -> dict[str, Any]:
    """Claims of a token that would be accepted; a value of None removes the claim, JSON_NULL sets null."""
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "exp": now + 3600, "iat": now, "iss": ISSUER, "aud": AUDIENCE}
    base.update(changes)
    return {k: None if v is JSON_NULL else v for k, v in base.items() if v is not None}


def hs(**changes: Any) -> str:
    return jwt.encode(claims(**changes), SECRET, algorithm="HS256")


def rs(signer: RsaKey | None = None, headers: dict[str, Any] | None = None, **changes: Any) -> str:
    signer = signer or key()
    return jwt.encode(
        claims(**changes), signer.private, algorithm="RS256", headers={"kid": signer.kid, **(headers or {})}
    )


@dataclass
class Attack:
    query: dict[str, str]
    status: int = 401
    headers: dict[str, str] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)  # must not appear in any log line
    traps: list[Endpoint] = field(default_factory=list)  # must never be fetched

    def __post_init__(self) -> None:
        self.tokens += [v for k, v in self.query.items() if k != "room_id"] + list(self.headers.values())


def in_query(token: str, status: int = 401, **extra: str) -> Attack:
    return Attack({"token": token, "room_id": ROOM, **extra}, status=status)


def hmac_with_our_kid(secret: bytes, digest: Any = hashlib.sha256) -> str:
    alg = "HS512" if digest is hashlib.sha512 else "HS256"
    return hs_sign({"alg": alg, "kid": KID}, claims(), secret, digest)


def either_algorithm(sign: Callable[..., str]) -> dict[str, Callable[[], str | Attack]]:
    """The attacks that read the same under HS256 and RS256, ``sign(**claim changes)`` making the token."""
    return {
        "expired": lambda: sign(exp=int(time.time()) - 5),
        "nbf-in-the-future": lambda: sign(nbf=int(time.time()) + 600),
        "wrong-iss": lambda: sign(iss="https://evil.test/"),
        "wrong-aud": lambda: sign(aud="another-api"),
        "missing-sub": lambda: sign(sub=None),
        "sub-object": lambda: sign(sub={"id": "alice"}),
        "tampered-payload-sub": lambda: retamper(sign(), sub="admin"),
        "8kb-token": lambda: sign(pad="x" * 8200),
        "empty-token": lambda: "",
        "token-only-in-access_token": lambda: Attack({"access_token": sign(), "room_id": ROOM}),
        "token-only-in-authorization-header": lambda: Attack(
            {"room_id": ROOM}, headers={"Authorization": f"Bearer {sign()}"}
        ),
        "room-outside-rooms-claim": lambda: in_query(sign(rooms=["support", "random"]), status=403),
    }


HS_ATTACKS: dict[str, Callable[[], str | Attack]] = {
    **either_algorithm(hs),
    "alg-none": lambda: unsigned({"alg": "none", "typ": "JWT"}, claims()),
    "alg-None-capitalised": lambda: unsigned({"alg": "None", "typ": "JWT"}, claims()),
    "alg-none-keeping-a-valid-signature": lambda: unsigned({"alg": "none"}, claims(), hs().split(".")[2]),
    "rs256-by-an-attacker-key": lambda: rs(attacker()),
    "hs512-with-the-right-secret": lambda: jwt.encode(claims(), SECRET, algorithm="HS512"),
    "hs256-with-a-wrong-secret": lambda: jwt.encode(
        claims(), "a-wrong-secret-that-is-32-bytes-long!!", algorithm="HS256"
    ),
    "hs256-with-an-empty-secret": lambda: hs_sign({"alg": "HS256", "typ": "JWT"}, claims(), b""),
    "missing-iss": lambda: hs(iss=None),
    "aud-list-without-ours": lambda: hs(aud=["another-api", "third-api"]),
    "missing-aud": lambda: hs(aud=None),
    "sub-integer": lambda: hs(sub=42),
    "sub-list": lambda: hs(sub=["alice", "admin"]),
    "sub-blank": lambda: hs(sub="   "),
    "sub-300-chars": lambda: hs(sub="a" * 300),
    "missing-exp": lambda: hs(exp=None),
    "exp-not-a-number": lambda: hs(exp="tomorrow"),
    "rooms-claim-a-string": lambda: hs(rooms="general-and-more"),
    "tampered-payload-exp": lambda: retamper(hs(exp=int(time.time()) - 5), exp=2**31),
    "tampered-payload-rooms": lambda: retamper(hs(rooms=["support"]), rooms=["general"]),
    "signature-stripped": lambda: hs().rsplit(".", 1)[0] + ".",
    "two-segments": lambda: hs().rsplit(".", 1)[0],
    "token-only-in-jwt": lambda: Attack({"jwt": hs(), "room_id": ROOM}),
    "token-only-in-cookie": lambda: Attack({"room_id": ROOM}, headers={"Cookie": f"token={hs()}"}),
    "user_id-other-than-sub": lambda: in_query(hs(), status=403, user_id="mallory"),
}

RS_ATTACKS: dict[str, Callable[[], str | Attack]] = {
    **either_algorithm(rs),
    "alg-none": lambda: unsigned({"alg": "none", "kid": KID}, claims()),
    "hs256-signed-with-the-rsa-public-key-pem": lambda: hmac_with_our_kid(key().public_pem),
    "hs256-signed-with-the-pem-without-newline": lambda: hmac_with_our_kid(key().public_pem.strip()),
    "hs256-signed-with-the-jwk-json": lambda: hmac_with_our_kid(json.dumps(key().jwk()).encode()),
    "hs512-signed-with-the-rsa-public-key": lambda: hmac_with_our_kid(key().public_pem, hashlib.sha512),
    "es256-by-an-attacker-key-with-our-kid": lambda: jwt.encode(
        claims(), ec_key(), algorithm="ES256", headers={"kid": KID}
    ),
    "another-rsa-key-with-our-kid": lambda: rs(attacker_same_kid()),
    "unknown-kid": lambda: rs(attacker()),
    "no-kid": lambda: jwt.encode(claims(), attacker().private, algorithm="RS256"),
    "kid-path-traversal": lambda: rs(attacker(), headers={"kid": "../../../../etc/passwd"}),
    "tampered-header-kid": lambda: ".".join(
        [unsigned({"alg": "RS256", "kid": "other"}, {}).split(".")[0], *rs().split(".")[1:]]
    ),
    "jwk-header-embedding-the-attacker-key": lambda: rs(attacker(), headers={"jwk": attacker().jwk()}),
    "jwk-header-with-our-kid": lambda: rs(attacker_same_kid(), headers={"jwk": attacker_same_kid().jwk()}),
}


@pytest.fixture
def debug_logs(captured: Captured, caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    """Every logger at DEBUG: a token must not leak even at the most verbose level."""
    level = powertools_logger.log_level
    powertools_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield captured
    finally:
        powertools_logger.setLevel(level)


@pytest.fixture(autouse=True)
def issuer(function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)


@pytest.fixture
def hs_connect(dynamodb: Any) -> Any:
    return load_function("connect")


@pytest.fixture
def jwks() -> Iterator[Endpoint]:
    with serve_jwks(key()) as (url, seen):
        yield Endpoint(url=url, seen=seen)


Loader = Callable[[str], Any]


@pytest.fixture
def rs_connect(monkeypatch: pytest.MonkeyPatch, dynamodb: Any) -> Loader:
    """``rs_connect(jwks_url)``: the connect function checking RS256 tokens against that JWKS."""

    def load(jwks_url: str) -> Any:
        monkeypatch.delenv("JWT_SECRET", raising=False)
        monkeypatch.setenv("JWT_JWKS_URL", jwks_url)
        monkeypatch.setenv("JWT_JWKS_TIMEOUT_SECONDS", str(JWKS_TIMEOUT))
        return load_function("connect")

    return load


def jwks_body(*keys: RsaKey) -> bytes:
    return json.dumps({"keys": [k.jwk() for k in keys]}).encode()


def attempt(module: Any, attack: str | Attack, **event: Any) -> dict[str, Any]:
    attack = in_query(attack) if isinstance(attack, str) else attack
    return module.handler(connect_event(attack.query, headers=attack.headers, **event), FakeContext())


def status(module: Any, token: str, connection_id: str) -> int:
    return int(attempt(module, token, connection_id=connection_id)["statusCode"])


def run_attack(module: Any, attack: str | Attack, dynamodb: Any, logs: Captured) -> dict[str, Any]:
    attack = in_query(attack) if isinstance(attack, str) else attack
    response = attempt(module, attack)
    stored = len(records(dynamodb))
    lines = logs.lines()
    leaked = leaks(lines, attack.tokens)
    fetched = sum(len(trap.seen) for trap in attack.traps)
    refused = int(response["statusCode"] == attack.status and stored == 0)
    summary.record("auth", attacks=1, refused=refused, records_written=stored, token_leaks=leaked)
    summary.record("auth", log_lines=len(lines))
    assert response["statusCode"] == attack.status, response
    assert stored == 0
    assert leaked == 0, [line for line in lines if any(t in line for t in attack.tokens if t)]
    assert fetched == 0
    body = response.get("body", "")
    assert not any(t and t in body for t in attack.tokens)
    return response


@pytest.fixture
def connect_with(rs_connect: Loader, jwks: Endpoint, dynamodb: Any) -> Loader:
    """``connect_with("hs256")`` / ``connect_with("rs256")``: the connect function checking that algorithm."""
    return lambda alg: load_function("connect") if alg == "hs256" else rs_connect(jwks.url)


SIGNERS = {"hs256": hs, "rs256": rs}
# The Cognito access token is the control of the two client_id claim shapes below.
CONTROLS: dict[str, Callable[[], str]] = {
    "hs256": hs,
    "rs256": rs,
    "rs256-cognito-access-token-for-our-client": lambda: rs(
        aud=None, token_use="access", client_id=AUDIENCE, scope="aws.cognito.signin.user.admin"
    ),
}


@pytest.mark.parametrize("control", list(CONTROLS))
def test_auth_control_valid_token_is_accepted(connect_with: Loader, dynamodb: Any, control: str) -> None:
    # Without these, a harness that refused everything would pass every attack.
    assert attempt(connect_with(control[:5]), CONTROLS[control]())["statusCode"] == 200
    assert len(records(dynamodb)) == 1


@pytest.mark.parametrize("name", list(HS_ATTACKS))
def test_auth_hs256_attack_is_refused(
    hs_connect: Any, dynamodb: Any, debug_logs: Captured, name: str
) -> None:
    run_attack(hs_connect, HS_ATTACKS[name](), dynamodb, debug_logs)


@pytest.mark.parametrize("name", list(RS_ATTACKS))
def test_auth_rs256_attack_is_refused(
    rs_connect: Loader, dynamodb: Any, jwks: Endpoint, debug_logs: Captured, name: str
) -> None:
    run_attack(rs_connect(jwks.url), RS_ATTACKS[name](), dynamodb, debug_logs)
    # Only the configured JWKS URL is ever fetched, whatever the token's kid/jku/x5u/jwk say.
    assert set(jwks.seen) <= {"/.well-known/jwks.json"}


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_auth_rs256_url_header_is_never_fetched(
    rs_connect: Loader, dynamodb: Any, jwks: Endpoint, debug_logs: Captured, header: str
) -> None:
    with http_endpoint(lambda path: (200, jwks_body(attacker()), 0.0)) as trap:
        connect = rs_connect(jwks.url)
        attack = in_query(rs(attacker(), headers={header: trap.url}))
        attack.traps.append(trap)
        run_attack(connect, attack, dynamodb, debug_logs)
    # The same header on our own key's token changes nothing: it is ignored, not obeyed.
    with http_endpoint(lambda path: (200, jwks_body(attacker()), 0.0)) as trap:
        assert attempt(connect, rs(headers={header: trap.url}))["statusCode"] == 200
        assert trap.seen == []


def test_auth_hs256_jku_header_is_never_fetched(hs_connect: Any, dynamodb: Any, debug_logs: Captured) -> None:
    with http_endpoint(lambda path: (200, jwks_body(attacker()), 0.0)) as trap:
        attack = in_query(rs(attacker(), headers={"jku": trap.url}))
        attack.traps.append(trap)
        run_attack(hs_connect, attack, dynamodb, debug_logs)


def serving(status: int, body: bytes, delay: float = 0.0) -> Callable[[ExitStack], str]:
    return lambda stack: stack.enter_context(http_endpoint(lambda path: (status, body, delay))).url


JWKS_FAILURES: dict[str, Callable[[ExitStack], str]] = {
    "down-connection-refused": lambda stack: closed_port_url(),
    "blackhole-never-answers": lambda stack: stack.enter_context(blackhole()),
    "slow-30s": lambda stack: serving(200, jwks_body(key()), 30.0)(stack),
    "http-500": serving(500, b"oops"),
    "not-json": serving(200, b"<html>"),
    "empty-key-set": serving(200, b'{"keys": []}'),
    "json-array": serving(200, b"[1,2]"),
}


@pytest.mark.parametrize("failure", list(JWKS_FAILURES))
def test_auth_rs256_jwks_failure_is_401_within_the_timeout(
    rs_connect: Loader, dynamodb: Any, debug_logs: Captured, failure: str
) -> None:
    with ExitStack() as stack:
        connect = rs_connect(JWKS_FAILURES[failure](stack))
        started = time.monotonic()
        response = run_attack(connect, rs(), dynamodb, debug_logs)
        elapsed = time.monotonic() - started
    assert response["statusCode"] == 401  # never a 5xx, never an exception
    assert elapsed < JWKS_BOUND_SECONDS, f"took {elapsed:.1f} s with a {JWKS_TIMEOUT} s JWKS timeout"


def test_auth_rs256_unknown_kid_flood_does_not_refetch_the_jwks_each_time(
    rs_connect: Loader, jwks: Endpoint
) -> None:
    connect = rs_connect(jwks.url)
    assert attempt(connect, rs())["statusCode"] == 200  # keys cached
    for i in range(20):
        forged = jwt.encode(claims(), attacker().private, algorithm="RS256", headers={"kid": f"k{i}"})
        assert attempt(connect, forged)["statusCode"] == 401
    # One fetch at start and at most one refresh in the cooldown: an attacker can't make us hammer the IdP.
    assert len(jwks.seen) <= 2, jwks.seen


def test_auth_leak_detector_sees_a_logged_token(debug_logs: Captured) -> None:
    # The detector itself: a token written by the shared logger (or any other) is found in the capture.
    token = hs()
    powertools_logger.debug("careless", extra={"query": {"token": token}})
    logging.getLogger("botocore.careless").debug("Authorization: Bearer %s", token.split(".")[2])
    lines = debug_logs.lines()
    assert any(line.startswith("{") and token in line for line in lines)  # the Powertools JSON line
    assert leaks(lines, [token]) >= 3


# Claim shapes (issue 16, item 3): well signed, wrong type.

CLAIM_SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "exp-numeric-string": lambda: {"exp": str(int(time.time()) + 3600)},
    "exp-float-string": lambda: {"exp": f"{time.time() + 3600:.3f}"},
    "exp-true": lambda: {"exp": True},
    "exp-list": lambda: {"exp": [int(time.time()) + 3600]},
    "nbf-numeric-string": lambda: {"nbf": str(int(time.time()) - 60)},
    "iat-numeric-string": lambda: {"iat": str(int(time.time()))},
    "rooms-null": lambda: {"rooms": JSON_NULL},
    "rooms-with-null": lambda: {"rooms": [ROOM, None]},
    "rooms-object": lambda: {"rooms": {ROOM: True}},
    "sub-lone-surrogate": lambda: {"sub": "alice\ud800"},
    "sub-lone-low-surrogate": lambda: {"sub": "\udc00"},
    "sub-empty": lambda: {"sub": ""},
    "sub-257-chars": lambda: {"sub": "a" * 257},
    "sub-newline": lambda: {"sub": "alice\nadmin"},
    "sub-nul": lambda: {"sub": "alice\u0000"},
    "sub-true": lambda: {"sub": True},
    "name-integer": lambda: {"name": 5},
    "name-object": lambda: {"name": {"first": "Alice"}},
    "name-null": lambda: {"name": JSON_NULL},
    "sub-null": lambda: {"sub": JSON_NULL},
    "name-lone-surrogate": lambda: {"name": "Al\udfffice"},
    "name-129-chars": lambda: {"name": "n" * 129},
    "aud-integer": lambda: {"aud": 7},
    "aud-list-with-non-string": lambda: {"aud": [AUDIENCE, 7]},
    "cognito-access-token-of-another-client": lambda: {
        "aud": None,
        "token_use": "access",
        "client_id": "another-app",
    },
    "client_id-ours-but-not-an-access-token": lambda: {"aud": None, "client_id": AUDIENCE},
}


def run_shape(module: Any, token: str, dynamodb: Any) -> None:
    response = attempt(module, token)
    stored = len(records(dynamodb))
    refused = int(response["statusCode"] == 401 and stored == 0)
    summary.record("claim_shapes", tried=1, refused=refused, stored=stored)
    assert response["statusCode"] == 401, response
    assert stored == 0


@pytest.mark.parametrize("shape", list(CLAIM_SHAPES))
@pytest.mark.parametrize("alg", list(SIGNERS))
def test_auth_claim_shape_is_refused(connect_with: Loader, dynamodb: Any, alg: str, shape: str) -> None:
    run_shape(connect_with(alg), SIGNERS[alg](**CLAIM_SHAPES[shape]()), dynamodb)


# JWKS rotation (item 1): a key rotated out stops working; made-up kids cannot make us fetch.

CACHE_SECONDS = 1.0
MIN_REFETCH_SECONDS = 0.5


def test_auth_jwks_rotated_out_key_is_refused_within_the_cache_lifespan(
    rs_connect: Loader, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = RsaKey(kid="2026-old"), RsaKey(kid="2026-new")
    published = [old, new]  # what the identity provider's JWKS endpoint publishes right now
    monkeypatch.setenv("JWT_JWKS_CACHE_SECONDS", str(CACHE_SECONDS))
    monkeypatch.setenv("JWT_JWKS_MIN_REFETCH_SECONDS", str(MIN_REFETCH_SECONDS))
    with http_endpoint(lambda path: (200, jwks_body(*published), 0.0)) as endpoint:
        connect = rs_connect(endpoint.url)
        assert status(connect, rs(old), "OLDKEYACCEPTED0=") == 200
        published.remove(old)  # the compromised key is rotated out
        rotated_at = time.monotonic()
        time.sleep(CACHE_SECONDS + 0.1)
        tried = 20
        statuses = [status(connect, rs(old), f"OLDKEY{i:09d}=") for i in range(tried)]
        stored_old = sum(1 for r in records(dynamodb) if r["connection_id"]["S"].startswith("OLDKEY0"))
        summary.record("jwks_rotation", tried=tried, refused=statuses.count(401), stored=stored_old)
        assert statuses == [401] * tried, f"{time.monotonic() - rotated_at:.2f} s after rotation"
        assert stored_old == 0
        assert status(connect, rs(new), "NEWKEYACCEPTED0=") == 200


def test_auth_jwks_unknown_kid_flood_fetches_at_most_once_per_interval(
    rs_connect: Loader, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_JWKS_MIN_REFETCH_SECONDS", str(MIN_REFETCH_SECONDS))
    with http_endpoint(lambda path: (200, jwks_body(key()), 0.0)) as endpoint:
        connect = rs_connect(endpoint.url)
        assert status(connect, rs(), "CONTROLTOKEN000=") == 200
        started = time.monotonic()
        flood = 0
        while time.monotonic() - started < 1.6:
            forged = rs(attacker(), headers={"kid": f"made-up-{flood}"})
            assert status(connect, forged, f"FLOOD{flood:010d}=") == 401
            flood += 1
        elapsed = time.monotonic() - started
        fetches = len(endpoint.seen)
        summary.record("jwks_rotation", unknown_kids=flood, fetches=fetches)
        # The first fetch, then at most one per interval however many tokens arrive.
        assert fetches <= 1 + int(elapsed / MIN_REFETCH_SECONDS) + 1, (fetches, flood, elapsed)
        assert flood > 20 * fetches
        assert len(records(dynamodb)) == 1
