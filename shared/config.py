"""Configuration, parsed and validated once per cold start.

Every setting comes from an environment variable that Terraform sets for the function (see
``terraform/functions.tf``). A missing or malformed value raises :class:`ConfigError` naming the variable,
so the function fails at init (``Runtime.ImportModuleError`` / init error) instead of on the first request.
An empty string counts as unset: Terraform passes ``""`` for optional settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class ConfigError(RuntimeError):
    """A required environment variable is missing or has a bad value (the message names it)."""


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _optional(env, name)
    if value is None:
        raise ConfigError(f"environment variable {name} is required but not set")
    return value


def _int(env: Mapping[str, str], name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"environment variable {name} must be between {minimum} and {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (_optional(env, name) or "false").lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}")
    return raw == "true"


def _float(env: Mapping[str, str], name: str, *, default: float, minimum: float, maximum: float) -> float:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"environment variable {name} must be between {minimum} and {maximum}, got {value}")
    return value


@dataclass(frozen=True, kw_only=True)
class TableConfig:
    table_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TableConfig:
        return cls(table_name=_required(env, "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"))


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """Where the token-signing key comes from, and what a token must say.

    Exactly one key source: ``JWT_SECRET`` (HS*, local development), ``JWT_SECRET_ARN`` (HS*, the secret
    in Secrets Manager) or ``JWT_JWKS_URL`` (RS*/ES*/PS*/EdDSA, e.g. Cognito or Auth0). The accepted
    algorithms are pinned here (``JWT_ALGORITHMS``), never taken from the token.

    With a JWKS, ``JWT_ISSUER`` and ``JWT_AUDIENCE`` are required: an identity provider signs the tokens of
    every application it serves with the same keys, so without both any of them would be accepted. Only
    ``JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE=true`` lifts that. The key set is cached for
    ``JWT_JWKS_CACHE_SECONDS`` (a key removed from the JWKS is refused after at most that long) and fetched
    at most once per ``JWT_JWKS_MIN_REFETCH_SECONDS`` whatever the tokens say.
    """

    secret: str | None
    secret_arn: str | None
    jwks_url: str | None
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None
    jwks_timeout_seconds: float
    jwks_cache_seconds: float
    jwks_min_refetch_seconds: float
    leeway_seconds: int
    allow_any_issuer_audience: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AuthConfig:
        sources = {name: _optional(env, name) for name in ("JWT_SECRET", "JWT_SECRET_ARN", "JWT_JWKS_URL")}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ConfigError(
                "exactly one of JWT_SECRET, JWT_SECRET_ARN or JWT_JWKS_URL must be set (found: " + found + ")"
            )
        symmetric = given[0] != "JWT_JWKS_URL"
        default_algorithms = "HS256" if symmetric else "RS256"
        raw_algorithms = _optional(env, "JWT_ALGORITHMS") or default_algorithms
        algorithms = tuple(a.strip() for a in raw_algorithms.split(",") if a.strip())
        allowed = SYMMETRIC_ALGORITHMS if symmetric else ASYMMETRIC_ALGORITHMS
        bad = [a for a in algorithms if a not in allowed]
        if not algorithms or bad:
            kind = "a shared secret" if symmetric else "JWT_JWKS_URL"
            raise ConfigError(
                f"environment variable JWT_ALGORITHMS has {', '.join(bad) or 'no algorithm'}; with {kind} "
                f"it must list some of {', '.join(sorted(allowed))}"
            )
        jwks_url = sources["JWT_JWKS_URL"]
        if jwks_url is not None and not jwks_url.startswith(("https://", "http://")):
            raise ConfigError(f"environment variable JWT_JWKS_URL must be an http(s) URL, got {jwks_url!r}")
        issuer, audience = _optional(env, "JWT_ISSUER"), _optional(env, "JWT_AUDIENCE")
        allow_any = _bool(env, "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE")
        missing = [name for name, value in (("JWT_ISSUER", issuer), ("JWT_AUDIENCE", audience)) if not value]
        if jwks_url is not None and missing and not allow_any:
            raise ConfigError(
                f"{' and '.join(missing)} must be set with JWT_JWKS_URL: without them a token the identity "
                "provider issued to any other application is accepted "
                "(JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE=true accepts that)"
            )
        cache_seconds = _float(env, "JWT_JWKS_CACHE_SECONDS", default=300, minimum=1, maximum=86_400)
        min_refetch_seconds = _float(
            env, "JWT_JWKS_MIN_REFETCH_SECONDS", default=30, minimum=0.1, maximum=3_600
        )
        if min_refetch_seconds > cache_seconds:
            raise ConfigError(
                "environment variable JWT_JWKS_MIN_REFETCH_SECONDS must not exceed JWT_JWKS_CACHE_SECONDS "
                f"({min_refetch_seconds} > {cache_seconds})"
            )
        return cls(
            secret=sources["JWT_SECRET"],
            secret_arn=sources["JWT_SECRET_ARN"],
            jwks_url=jwks_url,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            jwks_timeout_seconds=_float(
                env, "JWT_JWKS_TIMEOUT_SECONDS", default=3.0, minimum=0.1, maximum=20
            ),
            jwks_cache_seconds=cache_seconds,
            jwks_min_refetch_seconds=min_refetch_seconds,
            leeway_seconds=_int(env, "JWT_LEEWAY_SECONDS", default=0, minimum=0, maximum=300),
            allow_any_issuer_audience=allow_any,
        )


@dataclass(frozen=True, kw_only=True)
class DeadlineConfig:
    """How much of an invocation's remaining time AWS calls may use (see ``shared/deadline.py``).

    ``DEADLINE_MARGIN_MS`` is kept free at the end of every invocation for the function to answer.
    """

    margin_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DeadlineConfig:
        margin_ms = _int(env, "DEADLINE_MARGIN_MS", default=500, minimum=0, maximum=10_000)
        return cls(margin_seconds=margin_ms / 1000)


@dataclass(frozen=True, kw_only=True)
class MessagingConfig:
    """How messages are checked and delivered.

    ``callback_url`` is the management API base URL; when unset it is built from each event
    (``https://{domainName}/{stage}``).
    """

    callback_url: str | None
    max_message_bytes: int
    broadcast_concurrency: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MessagingConfig:
        return cls(
            callback_url=callback_url_from_env(env),
            # API Gateway refuses frames over 128 KiB anyway; a message can't be bigger than that.
            max_message_bytes=_int(env, "MAX_MESSAGE_BYTES", default=4096, minimum=1, maximum=128 * 1024),
            # 200 posts in flight at a 20 ms round trip is the account's 10,000 RPS callback throttle.
            broadcast_concurrency=_int(env, "BROADCAST_CONCURRENCY", default=32, minimum=1, maximum=200),
        )


def callback_url_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """``WEBSOCKET_CALLBACK_URL`` without a trailing slash, or None to build it from each event."""
    callback_url = _optional(env, "WEBSOCKET_CALLBACK_URL")
    if callback_url is None:
        return None
    if not callback_url.startswith(("https://", "http://")):
        raise ConfigError(
            f"environment variable WEBSOCKET_CALLBACK_URL must be an http(s) URL, got {callback_url!r}"
        )
    return callback_url.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class MessageStoreConfig:
    """Where chat messages are kept, and for how long (DynamoDB's TTL deletes them afterwards)."""

    table_name: str
    retention_days: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MessageStoreConfig:
        return cls(
            table_name=messages_table_name(env),
            retention_days=_int(env, "MESSAGE_RETENTION_DAYS", default=7, minimum=1, maximum=3650),
        )


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    """Frames a user may send (all their connections together): ``per_second``, in bursts of ``burst``."""

    per_second: float
    burst: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RateLimitConfig:
        return cls(
            # 0 turns the limit off (stage throttling still applies).
            per_second=_float(env, "RATE_LIMIT_PER_SECOND", default=10, minimum=0, maximum=10_000),
            burst=_int(env, "RATE_LIMIT_BURST", default=20, minimum=1, maximum=100_000),
        )


def messages_table_name(env: Mapping[str, str] = os.environ) -> str:
    """The messages table (it also keeps the rate-limit buckets, see shared/rate_limit.py)."""
    return _required(env, "DYNAMO_TABLE_NAME_CHAT_MESSAGES")


@dataclass(frozen=True, kw_only=True)
class RoomsConfig:
    """Where memberships and presence are kept."""

    table_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RoomsConfig:
        return cls(table_name=_required(env, "DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS"))


def max_rooms_per_connection(env: Mapping[str, str] = os.environ) -> int:
    """How many rooms one connection may be in at once (``join`` refuses more: ``too_many_rooms``)."""
    return _int(env, "MAX_ROOMS_PER_CONNECTION", default=50, minimum=1, maximum=1000)


@dataclass(frozen=True, kw_only=True)
class FanoutConfig:
    """Sharded fan-out (docs/fanout.md): a broadcast to more than ``shard_size`` live connections is cut
    into shard jobs of at most that many on the queue at ``queue_url``, which the fanout function posts.
    Without a queue (``FANOUT_QUEUE_URL`` unset) every broadcast is posted by the function itself. With
    one, ``FANOUT_SHARD_SIZE`` is required: its one default is Terraform's ``fanout_shard_size``."""

    queue_url: str | None
    shard_size: int | None  # None without a queue

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FanoutConfig:
        queue_url = _optional(env, "FANOUT_QUEUE_URL")
        if queue_url is not None and not queue_url.startswith(("https://", "http://")):
            raise ConfigError(
                f"environment variable FANOUT_QUEUE_URL must be an http(s) URL, got {queue_url!r}"
            )
        if queue_url is not None:
            _required(env, "FANOUT_SHARD_SIZE")
        return cls(queue_url=queue_url, shard_size=shard_size_from_env(env))


def shard_size_from_env(env: Mapping[str, str] = os.environ) -> int | None:
    """``FANOUT_SHARD_SIZE`` alone (None when unset): typing, which has no queue, is dropped past it."""
    if _optional(env, "FANOUT_SHARD_SIZE") is None:
        return None
    # At most what one fanout invocation posts in its time, and what fits in a 256 KB SQS message.
    return _int(env, "FANOUT_SHARD_SIZE", default=0, minimum=1, maximum=20_000)
