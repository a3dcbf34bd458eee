"""Configuration errors are reported at cold start, naming the variable."""

from __future__ import annotations

import pytest

from shared.config import AuthConfig, ConfigError, DeadlineConfig, MessagingConfig, TableConfig
from tests.conftest import load_function


def test_table_name_missing_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"):
        TableConfig.from_env({})


def test_empty_string_counts_as_unset() -> None:
    with pytest.raises(ConfigError, match="DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"):
        TableConfig.from_env({"DYNAMO_TABLE_NAME_CHAT_CONNECTIONS": "  "})


JWKS = {"JWT_JWKS_URL": "https://x/jwks.json", "JWT_ISSUER": "https://x/", "JWT_AUDIENCE": "chat"}


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "exactly one of JWT_SECRET, JWT_SECRET_ARN or JWT_JWKS_URL"),
        ({"JWT_SECRET": "s", "JWT_JWKS_URL": "https://x/jwks.json"}, "found: JWT_SECRET, JWT_JWKS_URL"),
        ({"JWT_SECRET": "s", "JWT_ALGORITHMS": "RS256"}, "JWT_ALGORITHMS"),
        ({"JWT_SECRET": "s", "JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({**JWKS, "JWT_ALGORITHMS": "HS256"}, "JWT_ALGORITHMS"),
        ({**JWKS, "JWT_JWKS_URL": "file:///etc/passwd"}, "JWT_JWKS_URL"),
        (
            {"JWT_JWKS_URL": "https://x/jwks.json"},
            "JWT_ISSUER and JWT_AUDIENCE must be set with JWT_JWKS_URL",
        ),
        ({**JWKS, "JWT_ISSUER": ""}, "^JWT_ISSUER must be set"),
        ({**JWKS, "JWT_AUDIENCE": " "}, "^JWT_AUDIENCE must be set"),
        (
            {"JWT_JWKS_URL": "https://x/jwks.json", "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE": "yes"},
            "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE must be true or false",
        ),
        (
            {**JWKS, "JWT_JWKS_CACHE_SECONDS": "10", "JWT_JWKS_MIN_REFETCH_SECONDS": "20"},
            "JWT_JWKS_MIN_REFETCH_SECONDS must not exceed",
        ),
        ({**JWKS, "JWT_JWKS_CACHE_SECONDS": "0"}, "JWT_JWKS_CACHE_SECONDS"),
        ({"JWT_SECRET": "s", "JWT_LEEWAY_SECONDS": "soon"}, "JWT_LEEWAY_SECONDS"),
    ],
)
def test_auth_config_errors_name_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AuthConfig.from_env(env)


def test_auth_algorithms_default_by_key_source() -> None:
    assert AuthConfig.from_env({"JWT_SECRET": "s"}).algorithms == ("HS256",)
    assert AuthConfig.from_env(JWKS).algorithms == ("RS256",)
    assert AuthConfig.from_env({**JWKS, "JWT_ALGORITHMS": "RS256, ES256"}).algorithms == (
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


def test_jwks_issuer_audience_opt_out_is_explicit() -> None:
    config = AuthConfig.from_env(
        {"JWT_JWKS_URL": "https://x/jwks.json", "JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE": "TRUE"}
    )
    assert config.allow_any_issuer_audience and config.issuer is None and config.audience is None
    # A shared secret is this deployment's own: iss and aud stay optional.
    assert AuthConfig.from_env({"JWT_SECRET": "s"}).allow_any_issuer_audience is False


def test_connect_with_jwks_and_no_issuer_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMO_TABLE_NAME_CHAT_CONNECTIONS", "t")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("JWT_JWKS_URL", "https://x/jwks.json")
    monkeypatch.setenv("JWT_AUDIENCE", "chat")
    monkeypatch.delenv("JWT_ISSUER", raising=False)
    with pytest.raises(ConfigError, match="JWT_ISSUER must be set with JWT_JWKS_URL"):
        load_function("connect")


@pytest.mark.parametrize(("raw", "margin"), [(None, 0.5), ("0", 0.0), ("1500", 1.5)])
def test_deadline_margin(raw: str | None, margin: float) -> None:
    env = {} if raw is None else {"DEADLINE_MARGIN_MS": raw}
    assert DeadlineConfig.from_env(env).margin_seconds == margin


@pytest.mark.parametrize("raw", ["-1", "soon", "20000"])
def test_deadline_margin_errors_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="DEADLINE_MARGIN_MS"):
        DeadlineConfig.from_env({"DEADLINE_MARGIN_MS": raw})


def test_fanout_defaults_post_everything_here_without_a_queue() -> None:
    from shared.config import FanoutConfig

    assert FanoutConfig.from_env({}) == FanoutConfig(queue_url=None, shard_size=None)
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/ws-chat-fanout"
    config = FanoutConfig.from_env({"FANOUT_QUEUE_URL": url, "FANOUT_SHARD_SIZE": "50"})
    assert (config.queue_url, config.shard_size) == (url, 50)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"FANOUT_SHARD_SIZE": "0"}, "FANOUT_SHARD_SIZE must be between 1 and 20000"),
        ({"FANOUT_SHARD_SIZE": "20001"}, "FANOUT_SHARD_SIZE must be between 1 and 20000"),
        ({"FANOUT_SHARD_SIZE": "many"}, "FANOUT_SHARD_SIZE must be an integer"),
        (
            {"FANOUT_QUEUE_URL": "ws-chat-fanout", "FANOUT_SHARD_SIZE": "5"},
            "FANOUT_QUEUE_URL must be an http",
        ),
        # Its one default is Terraform's (fanout_shard_size), which always sets it.
        ({"FANOUT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q"}, "FANOUT_SHARD_SIZE is required"),
    ],
)
def test_fanout_errors_name_the_variable(env: dict[str, str], match: str) -> None:
    from shared.config import FanoutConfig

    with pytest.raises(ConfigError, match=match):
        FanoutConfig.from_env(env)
