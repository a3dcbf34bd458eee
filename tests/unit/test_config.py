"""Configuration errors are reported at cold start, naming the variable."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import (
    AuthConfig,
    ConfigError,
    DeadlineConfig,
    FanoutConfig,
    MessagingConfig,
    TableConfig,
)
from tests.conftest import load_function

SECRET = {"JWT_SECRET": "s"}
JWKS_URL = {"JWT_JWKS_URL": "https://x/jwks.json"}
JWKS = {**JWKS_URL, "JWT_ISSUER": "https://x/", "JWT_AUDIENCE": "chat"}
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/ws-chat-fanout"


def case_id(value: Any) -> str | None:
    """A row's id: the config's name, then the variables it is given (``jwks+``: over JWKS)."""
    if isinstance(value, type):
        return value.__name__
    if not isinstance(value, dict):
        return None
    over_jwks = JWKS.items() <= value.items()
    given = {k: v for k, v in value.items() if not (over_jwks and JWKS.get(k) == v)}
    return ("jwks+" if over_jwks else "") + (",".join(f"{k}={v!r}" for k, v in given.items()) or "{}")


@pytest.mark.parametrize(
    ("config", "env", "match"),
    [
        (TableConfig, {}, "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"),
        (TableConfig, {"DYNAMO_TABLE_NAME_CHAT_CONNECTIONS": "  "}, "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"),
        (AuthConfig, {}, "exactly one of JWT_SECRET, JWT_SECRET_ARN or JWT_JWKS_URL"),
        (AuthConfig, {**SECRET, **JWKS_URL}, "found: JWT_SECRET, JWT_JWKS_URL"),
        (AuthConfig, {**SECRET, "JWT_ALGORITHMS": "RS256"}, "JWT_ALGORITHMS"),
        (AuthConfig, {**SECRET, "JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        (AuthConfig, {**JWKS, "JWT_ALGORITHMS": "HS256"}, "JWT_ALGORITHMS"),
        (AuthConfig, {**JWKS, "JWT_JWKS_URL": "file:///etc/passwd"}, "JWT_JWKS_URL"),
        (AuthConfig, JWKS_URL, "JWT_ISSUER and JWT_AUDIENCE must be set with JWT_JWKS_URL"),
        (AuthConfig, {**JWKS, "JWT_ISSUER": ""}, "^JWT_ISSUER must be set"),
        (AuthConfig, {**JWKS, "JWT_AUDIENCE": " "}, "^JWT_AUDIENCE must be set"),
        (
            AuthConfig,
            {**JWKS_URL, "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE": "yes"},
            "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE must be true or false",
        ),
        (
            AuthConfig,
            {**JWKS, "JWT_JWKS_CACHE_SECONDS": "10", "JWT_JWKS_MIN_REFETCH_SECONDS": "20"},
            "JWT_JWKS_MIN_REFETCH_SECONDS must not exceed",
        ),
        (AuthConfig, {**JWKS, "JWT_JWKS_CACHE_SECONDS": "0"}, "JWT_JWKS_CACHE_SECONDS"),
        (AuthConfig, {**SECRET, "JWT_LEEWAY_SECONDS": "soon"}, "JWT_LEEWAY_SECONDS"),
        (MessagingConfig, {"MAX_MESSAGE_BYTES": "big"}, "MAX_MESSAGE_BYTES must be an integer, got 'big'"),
        (MessagingConfig, {"MAX_MESSAGE_BYTES": "0"}, "MAX_MESSAGE_BYTES must be between"),
        (MessagingConfig, {"MAX_MESSAGE_BYTES": "200000"}, "MAX_MESSAGE_BYTES must be between"),
        (MessagingConfig, {"BROADCAST_CONCURRENCY": "0"}, "BROADCAST_CONCURRENCY"),
        (MessagingConfig, {"WEBSOCKET_CALLBACK_URL": "ftp://x"}, "WEBSOCKET_CALLBACK_URL"),
        (DeadlineConfig, {"DEADLINE_MARGIN_MS": "-1"}, "DEADLINE_MARGIN_MS"),
        (DeadlineConfig, {"DEADLINE_MARGIN_MS": "soon"}, "DEADLINE_MARGIN_MS"),
        (DeadlineConfig, {"DEADLINE_MARGIN_MS": "20000"}, "DEADLINE_MARGIN_MS"),
        (FanoutConfig, {"FANOUT_SHARD_SIZE": "0"}, "FANOUT_SHARD_SIZE must be between 1 and 20000"),
        (FanoutConfig, {"FANOUT_SHARD_SIZE": "20001"}, "FANOUT_SHARD_SIZE must be between 1 and 20000"),
        (FanoutConfig, {"FANOUT_SHARD_SIZE": "many"}, "FANOUT_SHARD_SIZE must be an integer"),
        (
            FanoutConfig,
            {"FANOUT_QUEUE_URL": "ws-chat-fanout", "FANOUT_SHARD_SIZE": "5"},
            "FANOUT_QUEUE_URL must be an http",
        ),
        # Its one default is Terraform's (fanout_shard_size), which always sets it.
        (FanoutConfig, {"FANOUT_QUEUE_URL": QUEUE}, "FANOUT_SHARD_SIZE is required"),
    ],
    ids=case_id,
)
def test_config_errors_name_the_variable(config: Any, env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config.from_env(env)


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        (AuthConfig, SECRET, {"algorithms": ("HS256",)}),
        (AuthConfig, JWKS, {"algorithms": ("RS256",)}),
        (AuthConfig, {**JWKS, "JWT_ALGORITHMS": "RS256, ES256"}, {"algorithms": ("RS256", "ES256")}),
        (
            AuthConfig,
            {**JWKS_URL, "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE": "TRUE"},
            {"allow_any_issuer_audience": True, "issuer": None, "audience": None},
        ),
        # A shared secret is this deployment's own: iss and aud stay optional.
        (AuthConfig, SECRET, {"allow_any_issuer_audience": False}),
        (
            MessagingConfig,
            {"WEBSOCKET_CALLBACK_URL": "https://a.example/prod/"},
            {
                "callback_url": "https://a.example/prod",
                "max_message_bytes": 4096,
                "broadcast_concurrency": 32,
            },
        ),
        (DeadlineConfig, {}, {"margin_seconds": 0.5}),
        (DeadlineConfig, {"DEADLINE_MARGIN_MS": "0"}, {"margin_seconds": 0.0}),
        (DeadlineConfig, {"DEADLINE_MARGIN_MS": "1500"}, {"margin_seconds": 1.5}),
        # Without a queue, fanout posts everything here.
        (FanoutConfig, {}, {"queue_url": None, "shard_size": None}),
        (
            FanoutConfig,
            {"FANOUT_QUEUE_URL": QUEUE, "FANOUT_SHARD_SIZE": "50"},
            {"queue_url": QUEUE, "shard_size": 50},
        ),
    ],
    ids=[
        "secret-algorithms-default-hs256",
        "jwks-algorithms-default-rs256",
        "algorithms-as-listed",
        "jwks-unsafe-opt-out-is-explicit",
        "secret-needs-no-issuer-or-audience",
        "messaging-defaults",
        "deadline-margin-default",
        "deadline-margin-0",
        "deadline-margin-1500ms",
        "fanout-without-a-queue",
        "fanout-with-a-queue",
    ],
)
def test_config_values_and_defaults(config: Any, env: dict[str, str], expected: dict[str, Any]) -> None:
    loaded = config.from_env(env)
    assert {name: getattr(loaded, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("function", "env", "match"),
    [
        ("connect", {"JWT_SECRET": "x" * 32}, "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"),
        ("disconnect", {"JWT_SECRET": "x" * 32}, "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"),
        ("send_message", {"JWT_SECRET": "x" * 32}, "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"),
        ("connect", {"DYNAMO_TABLE_NAME_CHAT_CONNECTIONS": "t"}, "JWT_SECRET"),
        (
            "connect",
            {
                "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS": "t",
                "JWT_JWKS_URL": "https://x/jwks.json",
                "JWT_AUDIENCE": "chat",
            },
            "JWT_ISSUER must be set with JWT_JWKS_URL",
        ),
    ],
    ids=[
        "connect-no-table",
        "disconnect-no-table",
        "send_message-no-table",
        "connect-no-key",
        "connect-jwks-no-issuer",
    ],
)
def test_function_with_a_bad_environment_fails_at_import(
    monkeypatch: pytest.MonkeyPatch, function: str, env: dict[str, str], match: str
) -> None:
    for name in (
        "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS",
        "JWT_SECRET",
        "JWT_SECRET_ARN",
        "JWT_JWKS_URL",
        "JWT_ISSUER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=match):
        load_function(function)
