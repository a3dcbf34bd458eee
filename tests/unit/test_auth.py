"""Token verification: key sources, pinned algorithms, claims."""

from __future__ import annotations

import base64
import json
import time

import boto3
import jwt
import pytest
from moto import mock_aws

from shared.auth import AuthError, TokenVerifier
from shared.config import AuthConfig
from tests.support.jwks import RsaKey, serve_jwks
from tests.support.tokens import SECRET, make_token


def hs_verifier(**env: str) -> TokenVerifier:
    return TokenVerifier(AuthConfig.from_env({"JWT_SECRET": SECRET, **env}))


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
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps({"sub": "a", "exp": time.time() + 60}).encode()).rstrip(b"=")
    refused(hs_verifier(), f"{header.decode()}.{body.decode()}.")


def test_nbf_in_future_is_refused() -> None:
    refused(hs_verifier(), make_token(nbf=int(time.time()) + 600))


def test_issuer_and_audience_enforced_when_configured() -> None:
    verifier = hs_verifier(JWT_ISSUER="https://issuer.example", JWT_AUDIENCE="chat")
    good = make_token(iss="https://issuer.example", aud="chat")
    assert verifier.verify(good).user_id == "alice"
    refused(verifier, make_token(iss="https://evil.example", aud="chat"))
    refused(verifier, make_token(iss="https://issuer.example", aud="other"))
    refused(verifier, make_token(aud="chat"))


@pytest.mark.parametrize("claims", [{"rooms": "general"}, {"rooms": [1, 2]}, {"name": 5}, {"sub": 12}])
def test_malformed_claims_are_refused(claims: dict[str, object]) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")
    refused(hs_verifier(), token)


def test_oversized_token_is_refused_before_parsing() -> None:
    refused(hs_verifier(), make_token(pad="x" * 9000))


def test_rs256_via_jwks_and_keys_are_cached() -> None:
    key = RsaKey()
    with serve_jwks(key) as (url, seen):
        verifier = TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": url}))
        assert verifier.verify(key.token("bob")).user_id == "bob"
        assert verifier.verify(key.token("carol")).user_id == "carol"
        assert len(seen) == 1


def test_hs256_signed_with_rsa_public_key_is_refused() -> None:
    key = RsaKey()
    with serve_jwks(key) as (url, _):
        verifier = TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": url}))
        # PyJWT itself refuses to HMAC-sign with a PEM public key; build the forgery by hand.
        import hashlib
        import hmac

        header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": key.kid}).encode()).rstrip(b"=")
        payload = base64.urlsafe_b64encode(
            json.dumps({"sub": "admin", "exp": int(time.time()) + 60}).encode()
        ).rstrip(b"=")
        signing_input = header + b"." + payload
        signature = base64.urlsafe_b64encode(hmac.new(key.public_pem, signing_input, hashlib.sha256).digest())
        forged = (signing_input + b"." + signature.rstrip(b"=")).decode()
        refused(verifier, forged)


def test_jwks_unknown_kid_is_refused() -> None:
    key, other = RsaKey(), RsaKey(kid="other")
    with serve_jwks(key) as (url, _):
        refused(TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": url})), other.token())


def test_jku_header_is_never_fetched() -> None:
    key, attacker = RsaKey(), RsaKey(kid="attacker")
    with serve_jwks(key) as (url, _), serve_jwks(attacker) as (evil_url, evil_seen):
        token = attacker.token(headers={"jku": evil_url, "kid": "attacker"})
        refused(TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": url})), token)
        assert evil_seen == []


def test_jwks_endpoint_down_is_401_not_an_exception() -> None:
    verifier = TokenVerifier(AuthConfig.from_env({"JWT_JWKS_URL": "http://127.0.0.1:9/jwks.json"}))
    assert "invalid token" in refused(verifier, RsaKey().token())


def test_jwks_endpoint_slow_is_401_within_timeout() -> None:
    key = RsaKey()
    with serve_jwks(key, delay=2.0) as (url, _):
        verifier = TokenVerifier(
            AuthConfig.from_env({"JWT_JWKS_URL": url, "JWT_JWKS_TIMEOUT_SECONDS": "0.3"})
        )
        started = time.monotonic()
        refused(verifier, key.token())
        assert time.monotonic() - started < 1.9


def test_secret_arn_fetched_once_at_start() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="chat/jwt", SecretString=SECRET)["ARN"]
        verifier = TokenVerifier(AuthConfig.from_env({"JWT_SECRET_ARN": arn}), secrets_client=client)
        client.update_secret(SecretId=arn, SecretString="rotated-but-not-seen-until-next-cold-start!")
        assert verifier.verify(make_token("alice")).user_id == "alice"
