"""The local stack's reading of a Terraform module (local_stack/terraform.py over local_stack/hcl.py): a
small module written here, and the real one (its tables, its functions without a route)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from local_stack.cli import _read_event
from local_stack.config import REPO_ROOT, StackConfig
from local_stack.dynamodb import EmbeddedDynamoDB, dynamodb_client, local_table_names
from local_stack.stack import check_route_keys
from local_stack.terraform import TerraformError, TerraformModel, evaluate_environment, load_model
from tests.support.tables import create_messages_table

BASE = """
resource "aws_apigatewayv2_api" "websocket" {
  route_selection_expression = "$request.body.action"
}

resource "aws_dynamodb_table" "connections" {
  name     = "${var.name}-connections"
  hash_key = "connection_id"
  attribute {
    name = "connection_id"
    type = "S"
  }
}

resource "aws_kms_key" "this" {}

variable "name" {
  type    = string
  default = "chat"
}

variable "retries" {
  type    = number
  default = 2
}

variable "no_default" {
  type = string
}
"""

FUNCTIONS = """
locals {
  common_env = { SERVICE = var.name }
  functions = {
    talk = {
      route_key   = "talk"
      timeout     = var.retries * 5
      environment = {
        TABLE     = aws_dynamodb_table.connections.name
        CALLBACK  = local.callback_url
        ATTEMPTS  = tostring(var.retries + 1)
        KEY_ARN   = aws_kms_key.this.arn
        UNSET     = var.no_default
        TEMPLATED = "${var.name}-${var.retries}"
      }
    }
    fanout  = { route_key = null, timeout = 60, environment = {} }
    publish = { timeout = 10, environment = {} }
  }
}
"""

KNOWN = {"local.callback_url": "http://127.0.0.1:1/dev", "aws_dynamodb_table.connections.name": "local_table"}


def module(tmp_path: Path, **files: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / f"{name}.tf").write_text(text)
    return tmp_path


@pytest.fixture
def model(tmp_path: Path) -> TerraformModel:
    return load_model([module(tmp_path, main=BASE, functions=FUNCTIONS)])


@pytest.fixture
def real() -> TerraformModel:
    return load_model([REPO_ROOT / "terraform"])


def test_functions_without_a_route_are_loaded_but_not_routed(model: TerraformModel) -> None:
    assert set(model.functions) == {"talk", "fanout", "publish"}
    assert model.functions["fanout"].route_key is None and model.functions["publish"].route_key is None
    assert model.route_keys == {"talk": "talk"}
    assert model.functions["talk"].timeout == 10  # expressions, not only literals
    check_route_keys(model)  # two route-less functions share no route


def test_environment_gets_local_values_and_reports_what_only_aws_knows(model: TerraformModel) -> None:
    env, unresolved = evaluate_environment(model, model.functions["talk"], tf_vars={}, known=KNOWN)
    assert env == {
        "SERVICE": "chat",
        "TABLE": "local_table",
        "CALLBACK": "http://127.0.0.1:1/dev",
        "ATTEMPTS": "3",
        "KEY_ARN": "",
        "UNSET": "",
        "TEMPLATED": "chat-2",
    }
    assert len(unresolved) == 2
    assert any("KEY_ARN" in u and "aws_kms_key.this.arn" in u for u in unresolved)
    assert any("UNSET" in u and "var.no_default has no value" in u for u in unresolved)


def test_a_var_given_as_text_takes_its_declared_type(model: TerraformModel) -> None:
    spec = model.functions["talk"]
    env, _ = evaluate_environment(model, spec, tf_vars={"retries": "41", "no_default": "x"}, known=KNOWN)
    assert env["ATTEMPTS"] == "42" and env["UNSET"] == "x" and env["TEMPLATED"] == "chat-41"
    with pytest.raises(TerraformError, match="variable retries is a number"):
        evaluate_environment(model, spec, tf_vars={"retries": "many"}, known=KNOWN)


def test_a_later_directory_replaces_a_block_and_one_directory_may_not_repeat_one(tmp_path: Path) -> None:
    base = module(tmp_path / "base", main=BASE, functions=FUNCTIONS)
    override = module(tmp_path / "override", functions=FUNCTIONS.replace('"talk"', '"speak"'))
    assert load_model([base, override]).route_keys == {"talk": "speak"}
    repeated = module(tmp_path / "repeated", main=BASE, functions=FUNCTIONS, again=FUNCTIONS)
    with pytest.raises(
        TerraformError, match=r"local.common_env is declared twice \(again.tf and functions.tf\)"
    ):
        load_model([repeated])


def changed(old: str, new: str) -> dict[str, str]:
    """The module's files with ``old`` replaced by ``new`` in functions.tf."""
    return {"main": BASE, "functions": FUNCTIONS.replace(old, new)}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"main": "resource {"}, "main.tf: cannot parse"),
        ({"main": BASE.replace('hash_key = "connection_id"', "")}, "connections has no hash_key"),
        (changed("var.retries * 5", '"ten"'), "must be a whole number"),
        (changed("route_key = null", "route_key = 3"), "string or null"),
        ({"main": BASE, "functions": "locals {}"}, "no local.functions map"),
        (changed("var.retries * 5", 'max("ten", 3)'), r"max\(\) takes one or more numbers"),
        ({}, r"no \*\.tf files"),
    ],
)
def test_a_module_the_stack_cannot_use_is_a_clear_error(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(TerraformError, match=message):
        load_model([module(tmp_path, **files)])


def test_min_and_max_are_evaluated(tmp_path: Path) -> None:
    files = changed("var.retries * 5", "max(var.retries * 5, min(3, 4))")
    assert load_model([module(tmp_path, **files)]).functions["talk"].timeout == 10


def test_the_real_functions_without_a_route_are_read_with_a_null_route_key(real: TerraformModel) -> None:
    unrouted = {name: spec for name, spec in real.functions.items() if spec.route_key is None}
    assert set(unrouted) == {"fanout", "publish"}
    assert unrouted["fanout"].timeout == 60
    assert "FANOUT_QUEUE_URL" in unrouted["fanout"].environment
    check_route_keys(real)  # two functions without a route do not share one


def test_two_routed_functions_on_one_route_still_clash(real: TerraformModel) -> None:
    real.functions["publish"] = dataclasses.replace(real.functions["publish"], route_key="sendMessage")
    with pytest.raises(Exception, match="same route_key 'sendMessage'"):
        check_route_keys(real)


def test_invoking_a_function_without_a_route_needs_an_event() -> None:
    args = argparse.Namespace(function="fanout", event=None)
    with pytest.raises(ValueError, match=r"fanout has no route.*--event"):
        _read_event(args, {"fanout": None, "send_message": "sendMessage"}, StackConfig.from_env())


def test_every_real_table_is_read_with_its_keys_and_ttl(real: TerraformModel) -> None:
    assert set(real.tables) == {"connections", "messages", "memberships"}
    messages = real.tables["messages"]
    assert (messages.hash_key, messages.range_key, messages.ttl_attribute) == ("room_id", "message_id", "ttl")
    assert messages.attributes == {"room_id": "S", "message_id": "S"} and messages.indexes == ()
    assert real.table is real.tables["connections"]


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
