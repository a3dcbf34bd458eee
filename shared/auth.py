"""JWT verification for ``$connect`` (docs/protocol.md, "Tokens").

The key comes from configuration, never from the token: ``jku``, ``x5u`` and ``jwk`` headers are ignored
and nothing a token names is fetched. The algorithms are pinned by configuration, so ``alg: none`` and
HS256-signed-with-the-RSA-public-key tokens are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from shared.config import AuthConfig

# A token is a URL query parameter or a subprotocol entry; anything this large is not ours.
MAX_TOKEN_BYTES = 8192
MAX_USER_ID_LENGTH = 256


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


class TokenVerifier:
    """Verifies tokens with a key resolved once per cold start (secret) or cached (JWKS)."""

    def __init__(
        self, config: AuthConfig, *, secrets_client: Any = None, jwk_client: jwt.PyJWKClient | None = None
    ) -> None:
        self._config = config
        self._secret: str | None = config.secret
        self._jwk_client = jwk_client
        if config.secret_arn is not None:
            self._secret = _fetch_secret(config.secret_arn, secrets_client)
        elif config.jwks_url is not None and jwk_client is None:
            self._jwk_client = jwt.PyJWKClient(
                config.jwks_url, cache_keys=True, lifespan=600, timeout=config.jwks_timeout_seconds
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
                audience=self._config.audience,
                leeway=self._config.leeway_seconds,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._config.audience is not None,
                    "verify_iss": self._config.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise AuthError(401, f"invalid token ({type(error).__name__})") from None
        return _identity(claims)

    def _key_for(self, token: str) -> Any:
        if self._jwk_client is None:
            return self._secret
        # Only the header's "kid" is used to pick a key from the configured JWKS.
        return self._jwk_client.get_signing_key_from_jwt(token).key


def _fetch_secret(secret_arn: str, client: Any) -> str:
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = client.get_secret_value(SecretId=secret_arn).get("SecretString")
    if not secret:
        raise RuntimeError(f"secret {secret_arn} has no SecretString")
    return str(secret)


def _identity(claims: dict[str, Any]) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_USER_ID_LENGTH:
        raise AuthError(401, "invalid token (sub)")
    name = claims.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        raise AuthError(401, "invalid token (name)")
    rooms = claims.get("rooms")
    if rooms is not None and (not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms)):
        raise AuthError(401, "invalid token (rooms)")
    return Identity(user_id=sub, name=name or None, rooms=frozenset(rooms) if rooms is not None else None)
