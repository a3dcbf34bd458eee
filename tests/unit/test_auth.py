"""Token verification: key sources, pinned algorithms, claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws

from local_stack.testing import SECRET, FakeContext, make_token
from local_stack.testing.jwks import RsaKey, http_endpoint, serve_jwks
from shared import deadline
from shared.auth import AuthError, JwksKeys, TokenVerifier
from shared.config import AuthConfig

ISSUER = "https://issuer.test/"
AUDIENCE = "chat-api"
EXPECTED = {"JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}


def hs_verifier(**env: str) -> TokenVerifier:
    return TokenVerifier(AuthConfig.from_env({"JWT_SECRET": SECRET, **env}))


def jwks_verifier(url: str, **env: str) -> TokenVerifier:
    return TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": url, **EXPECTED, **env}))


def rs_token(key: RsaKey, sub: str = "alice", **claims: object) -> str:
    return key.token(sub, **{"iss": ISSUER, "aud": AUDIENCE, **claims})


def hs_raw(**claims: object) -> str:
    """A token of exactly these claims (``...``: left out; a timedelta: that long from now, when the token is
    made) over a valid ``sub`` and ``exp``."""
    now = time.time()
    payload = {"sub": "alice", "exp": int(now) + 600, **claims}
    timed = {k: int(now + v.total_seconds()) if isinstance(v, timedelta) else v for k, v in payload.items()}
    return jwt.encode({k: v for k, v in timed.items() if v is not ...}, SECRET, algorithm="HS256")


def segment(part: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")


@pytest.fixture
def idp() -> Iterator[Any]:
    """An identity provider: ``key``, its JWKS served at ``url``, the requests it got in ``seen``."""
    key = RsaKey()
    with serve_jwks(key) as (url, seen):
        yield SimpleNamespace(key=key, url=url, seen=seen)


def refused(verifier: TokenVerifier, token: str | None, status: int = 401) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.status == status
    return info.value.reason


def test_hs256_valid_token_gives_identity() -> None:
    identity = hs_verifier().verify(make_token("alice", name="Alice", rooms=["a", "b"]))
    assert identity.user_id == "alice" and identity.name == "Alice"
    assert identity.may_join("a") and not identity.may_join("c")


def test_absent_rooms_claim_allows_any_room() -> None:
    assert hs_verifier().verify(make_token("alice")).may_join("anything")


def test_alg_none_is_refused() -> None:
    unsigned = segment({"alg": "none", "typ": "JWT"}) + b"." + segment({"sub": "a", "exp": time.time() + 60})
    refused(hs_verifier(), unsigned.decode() + ".")


def test_issuer_and_audience_enforced_when_configured() -> None:
    verifier = hs_verifier(JWT_ISSUER="https://issuer.example", JWT_AUDIENCE="chat")
    assert verifier.verify(make_token(iss="https://issuer.example", aud="chat")).user_id == "alice"
    refused(verifier, make_token(iss="https://evil.example", aud="chat"))
    refused(verifier, make_token(iss="https://issuer.example", aud="other"))
    refused(verifier, make_token(aud="chat"))


def test_rs256_via_jwks_and_keys_are_cached(idp: Any) -> None:
    verifier = jwks_verifier(idp.url)
    assert verifier.verify(rs_token(idp.key, "bob")).user_id == "bob"
    assert verifier.verify(rs_token(idp.key, "carol")).user_id == "carol"
    assert len(idp.seen) == 1


def test_hs256_signed_with_rsa_public_key_is_refused(idp: Any) -> None:
    # PyJWT itself refuses to HMAC-sign with a PEM public key; build the forgery by hand.
    claims = {"sub": "admin", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE}
    signing_input = segment({"alg": "HS256", "kid": idp.key.kid}) + b"." + segment(claims)
    signature = base64.urlsafe_b64encode(hmac.new(idp.key.public_pem, signing_input, hashlib.sha256).digest())
    refused(jwks_verifier(idp.url), (signing_input + b"." + signature.rstrip(b"=")).decode())


def test_jwks_unknown_kid_is_refused(idp: Any) -> None:
    refused(jwks_verifier(idp.url), rs_token(RsaKey(kid="other")))


def test_jku_header_is_never_fetched(idp: Any) -> None:
    attacker = RsaKey(kid="attacker")
    with serve_jwks(attacker) as (evil_url, evil_seen):
        token = attacker.token(headers={"jku": evil_url, "kid": "attacker"}, iss=ISSUER, aud=AUDIENCE)
        refused(jwks_verifier(idp.url), token)
        assert evil_seen == []


def test_jwks_endpoint_down_is_401_not_an_exception() -> None:
    verifier = jwks_verifier("http://127.0.0.1:9/jwks.json")
    assert "invalid token" in refused(verifier, rs_token(RsaKey()))


def test_jwks_endpoint_slow_is_401_within_timeout() -> None:
    key = RsaKey()
    with serve_jwks(key, delay=2.0) as (url, _):
        verifier = jwks_verifier(url, JWT_JWKS_TIMEOUT_SECONDS="0.3")
        started = time.monotonic()
        refused(verifier, rs_token(key))
        assert time.monotonic() - started < 1.9


def test_secret_arn_fetched_once_at_start() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="chat/jwt", SecretString=SECRET)["ARN"]
        verifier = TokenVerifier(AuthConfig.from_env({"JWT_SECRET_ARN": arn}), secrets_client=client)
        client.update_secret(SecretId=arn, SecretString="rotated-but-not-seen-until-next-cold-start!")
        assert verifier.verify(make_token("alice")).user_id == "alice"


# --- the JWKS is followed: rotation out and in, and a bounded fetch rate (issue 16, item 1) ---------------


def publishing(keys: list[RsaKey]) -> Any:
    """A JWKS endpoint's answer: ``keys``, as the test changes them."""
    return lambda path: (200, json.dumps({"keys": [k.jwk() for k in keys]}).encode(), 0.0)


def rotating_verifier(url: str, now: list[float]) -> TokenVerifier:
    """Its JWKS kept 300 s and fetched again at most every 30 s, by the clock ``now[0]``."""
    jwks = JwksKeys(url, timeout=2, cache_seconds=300, min_refetch_seconds=30, clock=lambda: now[0])
    return TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": url, **EXPECTED}), jwks=jwks)


def test_jwks_key_removed_from_the_set_is_refused_once_the_set_expires() -> None:
    old, new = RsaKey(kid="old"), RsaKey(kid="new")
    published, now = [old, new], [1000.0]
    with http_endpoint(publishing(published)) as endpoint:
        verifier = rotating_verifier(endpoint.url, now)
        assert verifier.verify(rs_token(old)).user_id == "alice"
        published.remove(old)  # the identity provider rotates the old key out
        now[0] += 299
        assert verifier.verify(rs_token(old)).user_id == "alice"  # within the cache lifespan
        now[0] += 1
        refused(verifier, rs_token(old))
        assert verifier.verify(rs_token(new)).user_id == "alice"
        assert len(endpoint.seen) == 2


def test_jwks_key_rotated_in_is_fetched_on_its_first_token() -> None:
    old, new = RsaKey(kid="old"), RsaKey(kid="new")
    published, now = [old], [1000.0]
    with http_endpoint(publishing(published)) as endpoint:
        verifier = rotating_verifier(endpoint.url, now)
        assert verifier.verify(rs_token(old)).user_id == "alice"
        published.append(new)
        now[0] += 30
        assert verifier.verify(rs_token(new)).user_id == "alice"
        assert len(endpoint.seen) == 2


def test_jwks_unknown_kids_fetch_at_most_once_per_interval(idp: Any) -> None:
    attacker, now = RsaKey(kid="attacker"), [1000.0]
    verifier = rotating_verifier(idp.url, now)
    assert verifier.verify(rs_token(idp.key)).user_id == "alice"
    for second in range(120):  # one made-up kid every half second for a minute
        attacker.kid = f"made-up-{second}"
        refused(verifier, rs_token(attacker))
        now[0] += 0.5
    # The first fetch, then one when the 30 s interval had passed: never one per token.
    assert len(idp.seen) == 2, idp.seen
    assert verifier.verify(rs_token(idp.key)).user_id == "alice"


def test_jwks_fetch_failure_is_also_rate_limited() -> None:
    with http_endpoint(lambda path: (500, b"down", 0.0)) as endpoint:
        verifier = rotating_verifier(endpoint.url, [1000.0])
        for _ in range(10):
            refused(verifier, rs_token(RsaKey()))
        assert len(endpoint.seen) == 1


def test_jwks_token_without_kid_is_refused_without_a_fetch(idp: Any) -> None:
    claims = {"sub": "a", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE}
    refused(rotating_verifier(idp.url, [1000.0]), jwt.encode(claims, idp.key.private, algorithm="RS256"))
    assert idp.seen == []


def test_jwks_cache_settings_come_from_the_environment() -> None:
    cache = {"JWT_JWKS_CACHE_SECONDS": "60", "JWT_JWKS_MIN_REFETCH_SECONDS": "5"}
    config = AuthConfig.from_env({"JWT_JWKS_URL": "https://x/jwks.json", **EXPECTED, **cache})
    assert (config.jwks_cache_seconds, config.jwks_min_refetch_seconds) == (60, 5)


# --- issuer and audience; Cognito access tokens (item 2) ----------------------------------------------------


def test_cognito_access_token_matches_the_audience_with_client_id(idp: Any) -> None:
    verifier, key = jwks_verifier(idp.url), idp.key
    assert (
        verifier.verify(key.token("alice", iss=ISSUER, client_id=AUDIENCE, token_use="access")).user_id
        == "alice"
    )
    refused(verifier, key.token("alice", iss=ISSUER, client_id="another-app", token_use="access"))
    # client_id counts only on an access token, and never beside an aud that is not ours.
    refused(verifier, key.token("alice", iss=ISSUER, client_id=AUDIENCE, token_use="id"))
    refused(verifier, key.token("alice", iss=ISSUER, client_id=AUDIENCE))
    refused(verifier, key.token("alice", iss=ISSUER, aud="other", client_id=AUDIENCE, token_use="access"))


def test_audience_list_must_contain_ours() -> None:
    verifier = hs_verifier(JWT_AUDIENCE="chat")
    assert verifier.verify(make_token(aud=["other", "chat"])).user_id == "alice"
    refused(verifier, make_token(aud=["other"]))
    refused(verifier, make_token(aud=[5, "other"]))
    refused(verifier, make_token(aud=5))


def test_jwks_without_issuer_checks_only_with_the_unsafe_opt_out(idp: Any) -> None:
    opt_out = {"JWT_JWKS_URL": idp.url, "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE": "true"}
    verifier = TokenVerifier(AuthConfig.from_env(opt_out))
    assert verifier.verify(idp.key.token("alice", iss="https://anyone/", aud="any-app")).user_id == "alice"


# --- claims of the wrong type (item 3), not yet valid, too large --------------------------------------------

CLAIM_SHAPES = {
    "exp-numeric-string": {"exp": str(int(time.time()) + 600)},
    "exp-bool": {"exp": True},
    "nbf-numeric-string": {"nbf": str(int(time.time()) - 60)},
    "nbf-in-the-future": {"nbf": timedelta(minutes=10)},  # from when the row runs, not from collection
    "iat-numeric-string": {"iat": str(int(time.time()))},
    "rooms-null": {"rooms": None},
    "rooms-object": {"rooms": {"general": True}},
    "rooms-with-null": {"rooms": ["general", None]},
    "rooms-string": {"rooms": "general"},
    "rooms-of-integers": {"rooms": [1, 2]},
    "sub-lone-surrogate": {"sub": "alice\ud800"},
    "sub-empty": {"sub": ""},
    "sub-257-chars": {"sub": "a" * 257},
    "sub-newline": {"sub": "alice\nadmin"},
    "sub-null": {"sub": None},
    "sub-integer": {"sub": 12},
    "name-integer": {"name": 5},
    "name-list": {"name": ["Alice"]},
    "name-null": {"name": None},
    "name-lone-surrogate": {"name": "Al\udfffice"},
    "name-129-chars": {"name": "n" * 129},
    "oversized-token": {"pad": "x" * 9000},  # refused before it is parsed
}


@pytest.mark.parametrize("shape", list(CLAIM_SHAPES))
def test_claims_of_the_wrong_shape_are_refused(shape: str) -> None:
    refused(hs_verifier(), hs_raw(**CLAIM_SHAPES[shape]))


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "a" * 256},
        {"name": ""},
        {"rooms": []},
        {"exp": 1.0e10},
        {"sub": "auth0|5f7c8ec7c33c6c004bbafe82"},
        {"name": "Zoë 🎉"},
    ],
)
def test_claims_at_the_edges_are_accepted(claims: dict[str, object]) -> None:
    assert hs_verifier().verify(hs_raw(**claims)).user_id


def test_jwks_fetch_ends_before_the_invocation_deadline() -> None:
    key = RsaKey()
    with serve_jwks(key, delay=3.0) as (url, seen):
        verifier = jwks_verifier(url, JWT_JWKS_TIMEOUT_SECONDS="10")
        started = time.monotonic()
        with deadline.invocation(FakeContext(seconds=0.7), margin_seconds=0.2):
            refused(verifier, rs_token(key))
        assert time.monotonic() - started < 1.0  # the 0.5 s left, not the configured 10 s
        assert len(seen) == 1


def test_jwks_no_fetch_without_time_left(idp: Any) -> None:
    verifier = jwks_verifier(idp.url)
    with deadline.invocation(FakeContext(seconds=0.1), margin_seconds=0.05):
        refused(verifier, rs_token(idp.key))
    assert idp.seen == []
    assert verifier.verify(rs_token(idp.key)).user_id == "alice"  # the refusal cost no fetch slot
    assert len(idp.seen) == 1
