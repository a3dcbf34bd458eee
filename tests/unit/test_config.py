"""Configuration errors are reported at cold start, naming the variable."""

from __future__ import annotations

import pytest

from shared.config import AuthConfig, ConfigError, MessagingConfig, TableConfig
from tests.conftest import load_function


def test_table_name_missing_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"):
        TableConfig.from_env({})


def test_empty_string_counts_as_unset() -> None:
    with pytest.raises(ConfigError, match="DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"):
        TableConfig.from_env({"DYNAMO_TABLE_NAME_CHAT_CONNECTIONS": "  "})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "exactly one of JWT_SECRET, JWT_SECRET_ARN or JWT_JWKS_URL"),
        ({"JWT_SECRET": "s", "JWT_JWKS_URL": "https://x/jwks.json"}, "found: JWT_SECRET, JWT_JWKS_URL"),
        ({"JWT_SECRET": "s", "JWT_ALGORITHMS": "RS256"}, "JWT_ALGORITHMS"),
        ({"JWT_SECRET": "s", "JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({"JWT_JWKS_URL": "https://x/jwks.json", "JWT_ALGORITHMS": "HS256"}, "JWT_ALGORITHMS"),
        ({"JWT_JWKS_URL": "file:///etc/passwd"}, "JWT_JWKS_URL"),
        ({"JWT_SECRET": "s", "JWT_LEEWAY_SECONDS": "soon"}, "JWT_LEEWAY_SECONDS"),
    ],
)
def test_auth_config_errors_name_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AuthConfig.from_env(env)


def test_auth_algorithms_default_by_key_source() -> None:
    assert AuthConfig.from_env({"JWT_SECRET": "s"}).algorithms == ("HS256",)
    assert AuthConfig.from_env({"JWT_JWKS_URL": "https://x/jwks.json"}).algorithms == ("RS256",)
    assert AuthConfig.from_env(
        {"JWT_JWKS_URL": "https://x", "JWT_ALGORITHMS": "RS256, ES256"}
    ).algorithms == (
        "RS256",
        "ES256",
    )


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"MAX_MESSAGE_BYTES": "big"}, "MAX_MESSAGE_BYTES must be an integer, got 'big'"),
        ({"MAX_MESSAGE_BYTES": "0"}, "MAX_MESSAGE_BYTES must be between"),
        ({"MAX_MESSAGE_BYTES": "200000"}, "MAX_MESSAGE_BYTES must be between"),
        ({"BROADCAST_CONCURRENCY": "0"}, "BROADCAST_CONCURRENCY"),
        ({"WEBSOCKET_CALLBACK_URL": "ftp://x"}, "WEBSOCKET_CALLBACK_URL"),
    ],
)
def test_messaging_config_errors_name_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MessagingConfig.from_env(env)


def test_messaging_defaults() -> None:
    config = MessagingConfig.from_env({"WEBSOCKET_CALLBACK_URL": "https://a.example/prod/"})
    assert (config.callback_url, config.max_message_bytes, config.broadcast_concurrency) == (
        "https://a.example/prod",
        4096,
        32,
    )


@pytest.mark.parametrize("function", ["connect", "disconnect", "send_message"])
def test_function_without_table_fails_at_import(monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    monkeypatch.delenv("DYNAMO_TABLE_NAME_CHAT_CONNECTIONS", raising=False)
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    with pytest.raises(ConfigError, match="DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"):
        load_function(function)


def test_connect_without_jwt_setting_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMO_TABLE_NAME_CHAT_CONNECTIONS", "t")
    for name in ("JWT_SECRET", "JWT_SECRET_ARN", "JWT_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_function("connect")
