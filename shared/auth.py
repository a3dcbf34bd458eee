"""JWT verification for ``$connect`` (docs/auth.md).

The key comes from configuration, never from the token: ``jku``, ``x5u`` and ``jwk`` headers are ignored
and nothing a token names is fetched. The algorithms are pinned by configuration, so ``alg: none`` and
HS256-signed-with-the-RSA-public-key tokens are refused. Claims are checked for type as well as value:
PyJWT reads ``exp`` and ``nbf`` with ``int()``, so ``"exp": "9999999999"`` would otherwise pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt

from shared import deadline
from shared.config import AuthConfig
from shared.protocol import encodes_to_utf8

# A token is a URL query parameter or a subprotocol entry; anything this large is not ours.
MAX_TOKEN_BYTES = 8192
MAX_USER_ID_LENGTH = 256
MAX_NAME_LENGTH = 128
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
MIN_FETCH_SECONDS = 0.1  # less time than this left: no JWKS fetch is worth starting


class AuthError(Exception):
    """The token is refused. ``status`` is the handshake status (401 or 403); ``reason`` is safe to show."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Identity:
    user_id: str
    name: str | None
    rooms: frozenset[str] | None  # None: any room

    def may_join(self, room_id: str) -> bool:
        return self.rooms is None or room_id in self.rooms


class JwksKeys:
    """The signing keys of one JWKS URL, following what it publishes.

    The whole set is replaced on every fetch, so a key removed from the JWKS is refused once the cached set
    is older than ``cache_seconds``. A token whose ``kid`` is not in the set causes a fetch (a key may just
    have been rotated in), but no fetch, for any reason, happens less than ``min_refetch_seconds`` after the
    previous one: a flood of made-up ``kid`` values costs the identity provider one request per interval.
    (PyJWT's ``PyJWKClient(cache_keys=True)`` keeps every key it has seen for the life of the process.)
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        cache_seconds: float,
        min_refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Used only to fetch and parse the set: its own caches are off.
        self._client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=timeout)
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # when the current set was fetched
        self._attempted_at: float | None = None  # when a fetch was last tried, successful or not
        self.fetches = 0

    def key(self, kid: Any) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("token header has no kid")
        with self._lock:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at >= self._cache_seconds:
                self._keys = {}  # expired: none of these keys may be used without a fresh look
            if kid not in self._keys and self._may_fetch(now):
                self._fetch(now)
            found = self._keys.get(kid)
        if found is None:
            raise jwt.InvalidTokenError("no key with this kid in the JWKS")
        return found

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch_seconds

    def _fetch(self, now: float) -> None:
        # Inside an invocation the fetch must end before its deadline (shared/deadline.py), whatever the
        # configured timeout: a JWKS that cannot answer in time is one that is down.
        left = deadline.remaining()
        if left is not None and left < MIN_FETCH_SECONDS:
            raise jwt.PyJWKClientConnectionError("no time left before the deadline to fetch the JWKS")
        self._client.timeout = self._timeout if left is None else min(self._timeout, left)
        self._attempted_at = now
        self.fetches += 1
        keys = self._client.get_signing_keys()  # PyJWKClientError (a PyJWTError) when none or unreachable
        self._keys = {key.key_id: key for key in keys if key.key_id}
        self._fetched_at = now


class TokenVerifier:
    """Verifies tokens with a key resolved once per cold start (secret) or from the JWKS (JwksKeys)."""

    def __init__(
        self, config: AuthConfig, *, secrets_client: Any = None, jwks: JwksKeys | None = None
    ) -> None:
        self._config = config
        self._secret: str | None = config.secret
        self._jwks = jwks
        if config.secret_arn is not None:
            self._secret = _fetch_secret(config.secret_arn, secrets_client)
        elif config.jwks_url is not None and jwks is None:
            self._jwks = JwksKeys(
                config.jwks_url,
                timeout=config.jwks_timeout_seconds,
                cache_seconds=config.jwks_cache_seconds,
                min_refetch_seconds=config.jwks_min_refetch_seconds,
            )

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError(401, "missing token")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError(401, "token too large")
        try:
            claims = jwt.decode(
                token,
                key=self._key_for(token),
                algorithms=list(self._config.algorithms),
                issuer=self._config.issuer,
                leeway=self._config.leeway_seconds,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": False,  # checked below: Cognito access tokens carry client_id instead
                    "verify_iss": self._config.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise AuthError(401, f"invalid token ({type(error).__name__})") from None
        _check_numeric_dates(claims)
        if self._config.audience is not None:
            _check_audience(claims, self._config.audience)
        return _identity(claims)

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._secret
        # Only the header's "kid" is used to pick a key from the configured JWKS.
        return self._jwks.key(jwt.get_unverified_header(token).get("kid")).key


def _fetch_secret(secret_arn: str, client: Any) -> str:
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = client.get_secret_value(SecretId=secret_arn).get("SecretString")
    if not secret:
        raise RuntimeError(f"secret {secret_arn} has no SecretString")
    return str(secret)


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    for name in NUMERIC_DATE_CLAIMS:
        value = claims.get(name)
        # RFC 7519 NumericDate: a JSON number. PyJWT has compared int(value), which a string passes.
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(401, f"invalid token ({name})")


def _check_audience(claims: dict[str, Any], audience: str) -> None:
    """``aud`` must name us; a token without ``aud`` passes only as a Cognito access token for our client."""
    if "aud" in claims:
        aud = claims["aud"]
        names = aud if isinstance(aud, list) else [aud]
        if all(isinstance(n, str) for n in names) and audience in names:
            return
    elif claims.get("token_use") == "access" and claims.get("client_id") == audience:
        return
    raise AuthError(401, "invalid token (aud)")


def _is_clean_text(value: object, max_length: int) -> TypeGuard[str]:
    """A non-blank string of printable characters that UTF-8 can encode (no lone surrogates)."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or not value.isprintable():
        return False
    return encodes_to_utf8(value)


def _identity(claims: dict[str, Any]) -> Identity:
    sub = claims.get("sub")
    if not _is_clean_text(sub, MAX_USER_ID_LENGTH):
        raise AuthError(401, "invalid token (sub)")
    name = claims.get("name")
    if "name" in claims and name != "" and not _is_clean_text(name, MAX_NAME_LENGTH):
        raise AuthError(401, "invalid token (name)")
    rooms = claims.get("rooms")
    if "rooms" in claims and (not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms)):
        raise AuthError(401, "invalid token (rooms)")
    return Identity(user_id=sub, name=name or None, rooms=frozenset(rooms) if rooms is not None else None)
