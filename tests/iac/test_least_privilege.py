"""Each function's IAM policy allows every AWS call its code makes (recorded while tests/unit runs, by
tests/iac/aws_calls.py), and grants nothing it never calls, with the variables of a real deployment."""

from __future__ import annotations

import re
from typing import Any

import pytest

from local_stack.hcl import Evaluator, Module
from tests.iac import function_keys
from tests.iac.gotchas import policy_statements
from tests.support.records import MEMBERSHIPS_TABLE, MESSAGES_TABLE, TABLE
from tests.support.sqs import FANOUT_QUEUE

FUNCTIONS = function_keys()  # local.functions in terraform/functions.tf
# Granted for the platform, not called through boto3 by the code: each is checked for its scope below.
PLATFORM_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "kms:Decrypt",
}
# Called with the fanout function's role by its SQS event source mapping, not by its code: checked for
# their scope below (the fanout function only, the fanout queue only).
MAPPING_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
MANAGEMENT_METHODS = {"PostToConnection": "POST", "GetConnection": "GET", "DeleteConnection": "DELETE"}


def _glob(pattern: str, value: str) -> bool:
    """IAM resource matching: * and ? are wildcards, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _statements(module: Module, evaluator: Evaluator, function: str) -> list[dict[str, list[str]]]:
    address = f'aws_iam_role_policy.function["{function}"]'
    return [s for a, s in policy_statements(module, evaluator) if a == address]


# The unit tests' table names (tests/support/records.py) and the Terraform table each one stands for.
TEST_TABLES = {TABLE: "connections", MESSAGES_TABLE: "messages", MEMBERSHIPS_TABLE: "memberships"}
# TransactWriteItems is authorised per item, as the action the item performs.
TRANSACT_ACTIONS = {kind: f"{kind}Item" for kind in ("Put", "Update", "Delete", "ConditionCheck")}


def _table_arn(name: str, evaluator: Evaluator) -> str:
    assert name in TEST_TABLES, f"a call to table {name!r}, which no Terraform table stands for"
    return str(evaluator.value(f'"${{aws_dynamodb_table.{TEST_TABLES[name]}.arn}}"'))


# The unit tests' queue (tests/support/sqs.py) and the Terraform queue it stands for.
TEST_QUEUES = {FANOUT_QUEUE: "fanout"}
# SendMessageBatch is authorised as SendMessage; SQS encrypts with the module key as the sender.
SQS_ACTIONS = {
    "SendMessage": ["sqs:SendMessage", "kms:GenerateDataKey"],
    "SendMessageBatch": ["sqs:SendMessage", "kms:GenerateDataKey"],
    "ChangeMessageVisibility": ["sqs:ChangeMessageVisibility"],
}


def _queue_arn(url: str, evaluator: Evaluator) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    assert name in TEST_QUEUES, f"a call to queue {name!r}, which no Terraform queue stands for"
    return str(evaluator.value(f'"${{aws_sqs_queue.{TEST_QUEUES[name]}.arn}}"'))


def _iam_requests(call: dict[str, Any], evaluator: Evaluator) -> list[tuple[str, str]]:
    service, operation, params = call["service"], call["operation"], call["params"]
    if service == "sqs" and operation in SQS_ACTIONS:
        key = str(evaluator.value('"${aws_kms_key.this.arn}"'))
        queue = _queue_arn(params["QueueUrl"], evaluator)
        return [(a, key if a.startswith("kms:") else queue) for a in SQS_ACTIONS[operation]]
    if service == "dynamodb" and operation == "TransactWriteItems":
        items = [item.split(":", 1) for item in params["TransactItems"].split(",")]
        return [(f"dynamodb:{TRANSACT_ACTIONS[kind]}", _table_arn(table, evaluator)) for kind, table in items]
    if service == "dynamodb":
        table = _table_arn(params["TableName"], evaluator)
        index = params.get("IndexName")
        return [(f"dynamodb:{operation}", f"{table}/index/{index}" if index else table)]
    if service == "apigatewaymanagementapi":
        stage = evaluator.local("stage_execution_arn")
        method = MANAGEMENT_METHODS[operation]
        return [("execute-api:ManageConnections", f"{stage}/{method}/@connections/{params['ConnectionId']}")]
    if service == "secretsmanager" and operation == "GetSecretValue":
        return [("secretsmanager:GetSecretValue", str(evaluator.variables["jwt_secret_arn"]))]
    raise AssertionError(f"no IAM mapping for {service}:{operation}: add one to this test")


def _requests(recording: dict[str, Any], function: str, evaluator: Evaluator) -> list[tuple[str, str]]:
    return [r for call in recording["calls"].get(function, []) for r in _iam_requests(call, evaluator)]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_calls_were_recorded(function: str, recording: dict[str, Any]) -> None:
    assert recording["calls"].get(function), (
        f"no AWS call was recorded for {function}: tests/unit must exercise it (or the recorder is broken)"
    )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_policy_allows_every_recorded_call(
    function: str, recording: dict[str, Any], module: Module, complete: Evaluator
) -> None:
    statements = _statements(module, complete, function)
    for action, resource in _requests(recording, function, complete):
        assert any(
            action in s["actions"] and any(_glob(p, resource) for p in s["resources"]) for s in statements
        ), f"{function} calls {action} on {resource}, which its policy does not allow"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_policy_grants_nothing_never_called(
    function: str, recording: dict[str, Any], module: Module, complete: Evaluator
) -> None:
    requests = _requests(recording, function, complete)
    for statement in _statements(module, complete, function):
        for action in statement["actions"]:
            if action in PLATFORM_ACTIONS or action in MAPPING_ACTIONS:
                continue
            for pattern in statement["resources"]:
                assert any(a == action and _glob(pattern, r) for a, r in requests), (
                    f"{function} is granted {action} on {pattern} but never calls it"
                )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_platform_grants_are_scoped(function: str, module: Module, complete: Evaluator) -> None:
    key = str(complete.value('"${aws_kms_key.this.arn}"'))
    secret_key = complete.variables["jwt_secret_kms_key_arn"]
    reads_secret = any(
        "secretsmanager:GetSecretValue" in s["actions"] for s in _statements(module, complete, function)
    )
    for statement in _statements(module, complete, function):
        for action in set(statement["actions"]) & PLATFORM_ACTIONS:
            for resource in statement["resources"]:
                if action.startswith("logs:"):
                    assert resource == f'${{aws_cloudwatch_log_group.function["{function}"].arn}}:*', resource
                elif action.startswith("xray:"):
                    assert resource == "*"  # X-Ray has no resource-level permissions
                else:
                    assert resource == key or (reads_secret and resource == secret_key), resource


def test_only_a_function_given_the_secret_may_read_it(
    module: Module, defaults: Evaluator, complete: Evaluator
) -> None:
    for function in FUNCTIONS:
        granted = [a for s in _statements(module, defaults, function) for a in s["actions"]]
        assert "secretsmanager:GetSecretValue" not in granted, (
            f"{function} may read a secret nobody configured"
        )
    readers = [
        f
        for f in FUNCTIONS
        if any("secretsmanager:GetSecretValue" in s["actions"] for s in _statements(module, complete, f))
    ]
    assert readers == ["connect"]


def test_glob_is_literal_outside_wildcards() -> None:
    assert _glob("arn/prod/POST/@connections/*", "arn/prod/POST/@connections/abc=")
    assert not _glob("arn/prod/POST/@connections/*", "arn/prod/DELETE/@connections/abc=")
    assert not _glob('${x["a"]}', '${x["b"]}')


@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_the_mapped_function_may_receive_from_the_queue(
    function: str, module: Module, complete: Evaluator
) -> None:
    queue = str(complete.value('"${aws_sqs_queue.fanout.arn}"'))
    granted = {
        (action, resource)
        for s in _statements(module, complete, function)
        for action in set(s["actions"]) & MAPPING_ACTIONS
        for resource in s["resources"]
    }
    if function != "fanout":
        assert granted == set(), f"{function} may receive from the fanout queue"
        return
    assert granted == {(action, queue) for action in MAPPING_ACTIONS}
    mapping = module.resources["aws_lambda_event_source_mapping.fanout"]
    assert mapping["event_source_arn"] == "${aws_sqs_queue.fanout.arn}"
    assert mapping["function_name"] == '${aws_lambda_function.this["fanout"].arn}'
