from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_stack.testing import SECRET, FakeManagementApi
from tests.support.records import MEMBERSHIPS_TABLE, MESSAGES_TABLE, TABLE, put_record
from tests.support.sqs import create_fanout_queues
from tests.support.tables import (
    create_connections_table,
    create_memberships_table,
    create_messages_table,
)


@pytest.fixture
def management_api() -> Iterator[FakeManagementApi]:
    api = FakeManagementApi().start()
    yield api
    api.stop()


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch, management_api: FakeManagementApi) -> dict[str, str]:
    """The environment Terraform gives the functions, with local values."""
    env = {
        "DYNAMO_TABLE_NAME_CHAT_CONNECTIONS": TABLE,
        "DYNAMO_TABLE_NAME_CHAT_MESSAGES": MESSAGES_TABLE,
        "DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS": MEMBERSHIPS_TABLE,
        "JWT_SECRET": SECRET,
        "WEBSOCKET_CALLBACK_URL": management_api.endpoint_url,
        "MAX_MESSAGE_BYTES": "4096",
        "BROADCAST_CONCURRENCY": "8",
    }
    unset = """JWT_SECRET_ARN JWT_JWKS_URL JWT_ALGORITHMS JWT_ISSUER JWT_AUDIENCE MESSAGE_RETENTION_DAYS
    RATE_LIMIT_PER_SECOND RATE_LIMIT_BURST MAX_ROOMS_PER_CONNECTION FANOUT_QUEUE_URL FANOUT_SHARD_SIZE"""
    for name in unset.split():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def dynamodb(function_env: dict[str, str]) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_connections_table(client, TABLE)
        create_messages_table(client, MESSAGES_TABLE)
        create_memberships_table(client, MEMBERSHIPS_TABLE)
        yield client


@pytest.fixture
def connected(dynamodb: Any, management_api: FakeManagementApi) -> Callable[..., None]:
    """``connected(cid, room, user, **put_record options)``: a stored connection, live at the fake API."""

    def connect(cid: str, room: str, user: str = "u", **options: Any) -> None:
        put_record(dynamodb, cid, room, user, **options)
        management_api.live.add(cid)

    return connect


@dataclass
class FanoutQueues:
    client: Any
    url: str
    dlq_url: str


@pytest.fixture
def sqs(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> FanoutQueues:
    """The fanout queue and its DLQ in moto; functions loaded after this shard past 3 connections."""
    client = boto3.client("sqs")
    url, dlq_url = create_fanout_queues(client)
    monkeypatch.setenv("FANOUT_QUEUE_URL", url)
    monkeypatch.setenv("FANOUT_SHARD_SIZE", "3")
    return FanoutQueues(client=client, url=url, dlq_url=dlq_url)


@pytest.fixture
def chat(dynamodb: Any, management_api: FakeManagementApi) -> Any:
    """Every function's handler over these tables and this fake API (tests/unit/chat_driver.py)."""
    from tests.unit.chat_driver import Chat

    return Chat(dynamodb, management_api)
