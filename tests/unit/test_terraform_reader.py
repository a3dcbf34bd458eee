"""The local stack's reading of a Terraform module (local_stack/terraform.py over local_stack/hcl.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.stack import check_route_keys
from local_stack.terraform import TerraformError, evaluate_environment, load_model

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


def test_functions_without_a_route_are_loaded_but_not_routed(tmp_path: Path) -> None:
    model = load_model([module(tmp_path, main=BASE, functions=FUNCTIONS)])
    assert set(model.functions) == {"talk", "fanout", "publish"}
    assert model.functions["fanout"].route_key is None and model.functions["publish"].route_key is None
    assert model.route_keys == {"talk": "talk"}
    assert model.functions["talk"].timeout == 10  # expressions, not only literals
    check_route_keys(model)  # two route-less functions share no route


def test_environment_gets_local_values_and_reports_what_only_aws_knows(tmp_path: Path) -> None:
    model = load_model([module(tmp_path, main=BASE, functions=FUNCTIONS)])
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


def test_a_var_given_as_text_takes_its_declared_type(tmp_path: Path) -> None:
    model = load_model([module(tmp_path, main=BASE, functions=FUNCTIONS)])
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


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"main": "resource {"}, "main.tf: cannot parse"),
        ({"main": BASE.replace('hash_key = "connection_id"', "")}, "connections has no hash_key"),
        (
            {"main": BASE, "functions": FUNCTIONS.replace("var.retries * 5", '"ten"')},
            "must be a whole number",
        ),
        (
            {"main": BASE, "functions": FUNCTIONS.replace("route_key = null", "route_key = 3")},
            "string or null",
        ),
        ({"main": BASE, "functions": "locals {}"}, "no local.functions map"),
    ],
)
def test_a_module_the_stack_cannot_use_is_a_clear_error(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(TerraformError, match=message):
        load_model([module(tmp_path, **files)])


def test_no_terraform_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TerraformError, match=r"no \*\.tf files"):
        load_model([tmp_path])


def test_min_and_max_take_numbers(tmp_path: Path) -> None:
    functions = FUNCTIONS.replace(
        "timeout     = var.retries * 5", "timeout     = max(var.retries * 5, min(3, 4))"
    )
    model = load_model([module(tmp_path, main=BASE, functions=functions)])
    assert model.functions["talk"].timeout == 10
    bad = FUNCTIONS.replace("timeout     = var.retries * 5", 'timeout     = max("ten", 3)')
    with pytest.raises(TerraformError, match=r"max\(\) takes one or more numbers"):
        load_model([module(tmp_path / "bad", main=BASE, functions=bad)])
