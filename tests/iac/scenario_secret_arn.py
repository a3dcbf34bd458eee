"""A recording scenario, not part of the normal run (no test_ prefix): connect configured the way Terraform
configures it in AWS (JWT_SECRET_ARN), against moto. test_least_privilege.py runs it next to tests/unit
so the Secrets Manager call behind the secretsmanager:GetSecretValue grant is exercised and recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from local_stack.testing import FakeContext, make_token
from tests.conftest import load_function
from tests.support.events import connect_event
from tests.support.records import MEMBERSHIPS_TABLE, TABLE
from tests.support.tables import create_connections_table, create_memberships_table

SECRET = "scenario-secret-that-is-at-least-32-bytes-long"


@pytest.fixture
def secret_arn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with mock_aws():
        create_connections_table(boto3.client("dynamodb"), TABLE)
        create_memberships_table(boto3.client("dynamodb"), MEMBERSHIPS_TABLE)
        arn = boto3.client("secretsmanager").create_secret(Name="chat-jwt", SecretString=SECRET)["ARN"]
        for name in ("JWT_SECRET", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DYNAMO_TABLE_NAME_CHAT_CONNECTIONS", TABLE)
        monkeypatch.setenv("DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS", MEMBERSHIPS_TABLE)
        monkeypatch.setenv("JWT_SECRET_ARN", arn)
        monkeypatch.setenv("JWT_ALGORITHMS", "HS256")
        yield arn


def test_connect_with_secret_arn_stores_connection(secret_arn: str) -> None:
    connect = load_function("connect")
    token = make_token("alice", secret=SECRET)
    response = connect.handler(connect_event({"token": token, "room_id": "general"}), FakeContext())
    assert response["statusCode"] == 200
