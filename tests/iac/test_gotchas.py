"""Every Terraform gotcha of docs/aws-behaviour.md holds for the module and is caught in the seed's HCL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_stack.hcl import Evaluator, Module, expand_dynamic, instances
from tests.iac import MODULE_DIR, with_values
from tests.iac.gotchas import (
    CHECKS,
    dashboard_metrics_are_metric_arrays,
    dependency_graph_is_acyclic,
    execution_logging_is_opt_in,
    iam_grants_no_scan_or_wildcards,
    lambda_permissions_name_the_exact_route,
    manage_connections_is_post_on_the_stage,
)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_module_passes(name: str, module: Module, defaults: Evaluator, complete: Evaluator) -> None:
    for evaluator in (defaults, complete):
        assert CHECKS[name](module, evaluator) == []


@pytest.mark.parametrize("name", sorted(set(CHECKS) - {"dependency_graph_is_acyclic"}))
def test_seed_fails(name: str, seed: Module) -> None:
    problems = CHECKS[name](seed, Evaluator(seed, {}, lenient=True))
    assert problems, f"{name} finds nothing wrong in the seed's HCL: it would not catch the seed's mistake"


def test_cycle_check_catches_a_cycle() -> None:
    cyclic = Module(directory=Path("."))
    cyclic.resources = {
        "aws_lambda_function.a": {
            "environment": [{"variables": {"URL": "${aws_apigatewayv2_stage.s.invoke_url}"}}]
        },
        "aws_apigatewayv2_stage.s": {"deployment_id": "${aws_lambda_function.a.arn}"},
    }
    assert dependency_graph_is_acyclic(cyclic, Evaluator(cyclic, {})) != []


def test_dashboard_check_catches_flattened_metrics() -> None:
    """The nested for + flatten() form (one flat list of strings) fails; one array per metric passes."""
    metrics = {
        "flattened": 'flatten([for key in ["a", "b"] : [for metric in ["Errors", "Throttles"] :'
        ' [["AWS/Lambda", metric, "FunctionName", key]]]])',
        "arrays": 'concat([for pair in setproduct(["a", "b"], ["Errors", "Throttles"]) :'
        ' ["AWS/Lambda", pair[1], "FunctionName", pair[0]]], [["AWS/Lambda", "Duration", "FunctionName", "a",'
        ' { stat = "p99" }]])',
    }
    problems = {}
    for form, expression in metrics.items():
        dashboard = Module(directory=Path("."))
        dashboard.resources = {
            "aws_cloudwatch_dashboard.d": {
                "dashboard_body": '${jsonencode({widgets = [{type = "metric", properties = '
                + f'{{title = "t", metrics = {expression}}}}}]}})}}'
            }
        }
        problems[form] = dashboard_metrics_are_metric_arrays(dashboard, Evaluator(dashboard, {}))
    # 2 functions x 2 metrics x 4 strings, each on its own instead of one array per metric
    assert len(problems["flattened"]) == 16, problems["flattened"]
    assert problems["arrays"] == []


@pytest.mark.parametrize(
    "flags", [{}, {"create_api_gateway_account_role": True}, {"api_gateway_cloudwatch_role_configured": True}]
)
def test_access_logs_follow_the_account_role(
    flags: dict[str, bool], module: Module, defaults: Evaluator
) -> None:
    evaluator = with_values(defaults, **flags)
    stage = module.resources["aws_apigatewayv2_stage.this"]
    inner = instances(module, evaluator, "aws_apigatewayv2_stage.this")[None]
    assert len(expand_dynamic(inner, stage, "access_log_settings")) == (1 if flags else 0)
    assert execution_logging_is_opt_in(module, evaluator) == []


def test_logging_check_catches_unconditional_access_logs() -> None:
    static = Module.load(MODULE_DIR)
    stage = static.resources["aws_apigatewayv2_stage.this"]
    dynamic = stage.pop("dynamic")
    stage["access_log_settings"] = dynamic[0]["access_log_settings"]["content"]
    assert execution_logging_is_opt_in(static, Evaluator(static, static.defaults())) != []


def _policy_module(actions: list[str], resource: str) -> Module:
    policy = Module(directory=Path("."))
    action_list = ", ".join(f'"{a}"' for a in actions)
    policy.resources = {
        "aws_iam_role_policy.p": {
            "policy": '${jsonencode({Statement = [{Effect = "Allow", '
            + f'Action = [{action_list}], Resource = ["{resource}"]}}]}})}}'
        }
    }
    return policy


ACCOUNT = "us-east-1:123456789012"
API = f"arn:aws:execute-api:{ACCOUNT}:api"


@pytest.mark.parametrize(
    ("actions", "resource", "needed"),
    [
        (["dynamodb:GetItem"], "*", False),
        (["dynamodb:Query"], f"arn:aws:dynamodb:{ACCOUNT}:table/t/index/*", False),
        (["dynamodb:GetItem"], f"arn:aws:dynamodb:{ACCOUNT}:table/*", False),
        (["kms:Decrypt"], "*", False),
        (["secretsmanager:GetSecretValue"], f"arn:aws:secretsmanager:{ACCOUNT}:secret:*", False),
        (["xray:PutTraceSegments", "dynamodb:GetItem"], "*", False),
        (["execute-api:ManageConnections"], f"{API}/*", False),
        (["execute-api:ManageConnections"], f"{API}/*/POST/@connections/*", False),
        (["dynamodb:GetItem"], f"{API}/prod/POST/@connections/*", False),
        (["logs:PutLogEvents"], "*", False),
        (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*", True),
        (["execute-api:ManageConnections"], f"{API}/prod/POST/@connections/*", True),
        (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            f"arn:aws:logs:{ACCOUNT}:log-group:/aws/lambda/f:*",
            True,
        ),
    ],
)
def test_wildcard_check_accepts_only_the_needed_wildcards(
    actions: list[str], resource: str, needed: bool
) -> None:
    policy = _policy_module(actions, resource)
    assert (iam_grants_no_scan_or_wildcards(policy, Evaluator(policy, {})) == []) is needed


def _statement(module: Module, sid: str) -> dict[str, Any]:
    """The content of the dynamic statement ``sid`` of the functions' policy document."""
    document = module.data["aws_iam_policy_document.function"]
    [statement] = [d["statement"] for d in document["dynamic"] if d["statement"]["content"][0]["sid"] == sid]
    return statement["content"][0]


def test_wildcard_check_catches_a_table_wildcard_in_the_module(complete: Evaluator) -> None:
    widened = Module.load(MODULE_DIR)
    _statement(widened, '"${local.dynamodb_tables[statement.key].sid}Items"')["resources"] = ['"*"']
    problems = iam_grants_no_scan_or_wildcards(widened, Evaluator(widened, complete.variables))
    assert any("dynamodb:DeleteItem" in p and p.endswith(" *") for p in problems), problems


@pytest.mark.parametrize(
    "source_arn",
    [
        # ends like a route ARN, but is not built from the API's execution_arn
        '"arn:aws:execute-api:us-east-1:123456789012:abc123/prod/${each.value.route_key}"',
        # the right form, but the same route for every function
        '"${aws_apigatewayv2_api.websocket.execution_arn}/${var.stage_name}/$connect"',
        # a stage the module has not got
        '"${aws_apigatewayv2_api.websocket.execution_arn}/other/${each.value.route_key}"',
    ],
)
def test_permission_check_requires_the_full_route_arn(source_arn: str, complete: Evaluator) -> None:
    changed = Module.load(MODULE_DIR)
    changed.resources["aws_lambda_permission.this"]["source_arn"] = source_arn
    assert lambda_permissions_name_the_exact_route(changed, Evaluator(changed, complete.variables)) != []


@pytest.mark.parametrize(
    "resource",
    [
        '"arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/@connections/*"',
        '"${aws_apigatewayv2_api.websocket.execution_arn}/*/POST/@connections/*"',
        '"${aws_apigatewayv2_api.websocket.execution_arn}/other/POST/@connections/*"',
    ],
)
def test_manage_connections_check_requires_the_stage_arn(resource: str, complete: Evaluator) -> None:
    changed = Module.load(MODULE_DIR)
    _statement(changed, '"PostToConnections"')["resources"] = [resource]
    assert manage_connections_is_post_on_the_stage(changed, Evaluator(changed, complete.variables)) != []
