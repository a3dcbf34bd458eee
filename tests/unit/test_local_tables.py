"""The local stack reads every table from Terraform and names each one locally."""

from __future__ import annotations

from local_stack.config import REPO_ROOT
from local_stack.dynamodb import EmbeddedDynamoDB, dynamodb_client, local_table_names
from local_stack.terraform import load_model
from tests.support.tables import create_messages_table


def test_every_terraform_table_is_read_with_its_keys_and_ttl() -> None:
    model = load_model([REPO_ROOT / "terraform"])
    assert set(model.tables) == {"connections", "messages", "memberships"}
    messages = model.tables["messages"]
    assert (messages.hash_key, messages.range_key, messages.ttl_attribute) == ("room_id", "message_id", "ttl")
    assert messages.attributes == {"room_id": "S", "message_id": "S"} and messages.indexes == ()
    assert model.table is model.tables["connections"]


def test_local_table_names_follow_the_connections_table() -> None:
    resources = ["connections", "messages"]
    assert local_table_names("chat_connections", resources) == {
        "connections": "chat_connections",
        "messages": "chat_messages",
    }
    assert local_table_names("other_table", resources) == {
        "connections": "other_table",
        "messages": "other_table_messages",
    }


def test_an_embedded_dynamodb_started_after_another_in_the_same_process_begins_empty() -> None:
    # moto's backends are per process: without the reset, a test suite's second stack saw the first one's
    # messages (a client_msg_id reused by another test was refused as "already used").
    first = EmbeddedDynamoDB()
    db = dynamodb_client(first.start(), "us-east-1")
    create_messages_table(db, "left_behind")
    first.stop()
    second = EmbeddedDynamoDB()
    try:
        assert dynamodb_client(second.start(), "us-east-1").list_tables()["TableNames"] == []
    finally:
        second.stop()
