"""The local stack reads every table from Terraform and names each one locally."""

from __future__ import annotations

from local_stack.config import REPO_ROOT
from local_stack.dynamodb import local_table_names
from local_stack.terraform import load_model


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
