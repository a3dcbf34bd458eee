"""Every environment variable a function's code reads is set by Terraform for that function (or is listed
in terraform/README.md as read but deliberately left unset), and every variable Terraform sets is read."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from local_stack.hcl import Evaluator
from tests.iac import ROOT, function_keys, readme_section, with_values

FUNCTIONS = function_keys()  # local.functions in terraform/functions.tf
# Read by Powertools for AWS Lambda itself, for every function.
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def documented_unset() -> set[str]:
    """The backticked names of the table under the README heading 'Read by the code, not set by Terraform'."""
    section = readme_section("### Read by the code, not set by Terraform")
    return set(re.findall(r"^\| `([A-Z0-9_]+)`", section, re.MULTILINE))


# Declared in local.functions but dropped from local.function_env (what Lambda gets) while unset: the code
# treats an absent one as its default (JWT_SECRET_ARN or JWT_JWKS_URL, whichever is used; no iss/aud check).
OPTIONAL = {"JWT_SECRET_ARN", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"}


def declared_env(evaluator: Evaluator) -> dict[str, set[str]]:
    """Every name local.functions declares per function (merged with local.common_env)."""
    functions = evaluator.local("functions")
    common = set(evaluator.local("common_env"))
    return {name: common | set(fn["environment"]) for name, fn in functions.items()}


def terraform_env(evaluator: Evaluator) -> dict[str, set[str]]:
    """What Lambda actually gets: local.function_env, which drops null and empty values."""
    return {name: set(env) for name, env in evaluator.local("function_env").items()}


def names_in_source() -> set[str]:
    """Every env-var-like string literal in shared/ and lambdas/ (what the code could read)."""
    names: set[str] = set()
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "lambdas").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        exported = {  # __all__ lists names of the module, not variables
            id(node)
            for assign in ast.walk(tree)
            if isinstance(assign, ast.Assign)
            and any(getattr(t, "id", None) == "__all__" for t in assign.targets)
            for node in ast.walk(assign.value)
        }
        # AWS API enum values (e.g. ReturnValuesOnConditionCheckFailure="ALL_OLD") look like names too.
        api_values = {
            id(value)
            for mapping in ast.walk(tree)
            if isinstance(mapping, ast.Dict)
            for key, value in zip(mapping.keys, mapping.values, strict=True)
            if isinstance(key, ast.Constant) and str(key.value).startswith("ReturnValues")
        } | {
            id(keyword.value)
            for keyword in ast.walk(tree)
            if isinstance(keyword, ast.keyword) and str(keyword.arg).startswith("ReturnValues")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ENV_NAME.fullmatch(node.value)
                and id(node) not in exported
                and id(node) not in api_values
            ):
                names.add(node.value)
    return names


def test_common_env_is_what_powertools_reads(defaults: Evaluator) -> None:
    assert set(defaults.local("common_env")) == POWERTOOLS


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_variable_the_code_reads_is_set(
    function: str, recording: dict[str, Any], complete: Evaluator
) -> None:
    read = set(recording["env"].get(function, []))
    assert read, f"no environment read was recorded for {function}"
    missing = read - terraform_env(complete)[function] - OPTIONAL - documented_unset()
    assert missing == set(), f"{function} reads {sorted(missing)}, which Terraform does not set"


@pytest.mark.parametrize("variables", ["defaults", "complete"])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_optional_variables_are_left_unset(
    function: str, variables: str, request: pytest.FixtureRequest
) -> None:
    evaluator: Evaluator = request.getfixturevalue(variables)
    dropped = declared_env(evaluator)[function] - terraform_env(evaluator)[function]
    assert dropped <= OPTIONAL, f"{function} ({variables}) gets no {sorted(dropped - OPTIONAL)}"


def test_optional_variables_reach_lambda_when_set(complete: Evaluator) -> None:
    idp = "https://auth.example.com/"
    jwks = with_values(
        complete, jwt_jwks_url=f"{idp}.well-known/jwks.json", jwt_issuer=idp, jwt_audience="ws-chat"
    )
    deployed = set().union(*terraform_env(jwks).values())
    assert deployed >= OPTIONAL


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_variable_terraform_sets_is_read(
    function: str, recording: dict[str, Any], complete: Evaluator
) -> None:
    read = set(recording["env"].get(function, []))
    unused = declared_env(complete)[function] - POWERTOOLS - read
    assert unused == set(), f"Terraform sets {sorted(unused)} for {function}, which its code never reads"


def test_every_name_in_the_source_is_set_or_documented(complete: Evaluator) -> None:
    known = set().union(*declared_env(complete).values()) | documented_unset()
    assert names_in_source() - known == set()


def test_documented_unset_variables_are_really_unset(complete: Evaluator) -> None:
    documented = documented_unset()
    assert "JWT_SECRET" in documented, "the local-only JWT_SECRET must be documented as never set in AWS"
    assert documented & set().union(*declared_env(complete).values()) == set()
