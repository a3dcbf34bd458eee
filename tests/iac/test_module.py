"""The module parses, every reference resolves, every variable is used, and every resource evaluates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local_stack.hcl import Evaluator, HclError, Module, instances, parse_file, references, unquote
from tests.iac import EXAMPLE_DIR, MODULE_DIR, ROOT, with_values
from tests.iac.gotchas import evaluated

ALL_TF = sorted([*MODULE_DIR.glob("*.tf"), *EXAMPLE_DIR.glob("*.tf")])
BUILTIN_ROOTS = {"each", "count", "path", "self", "terraform"}
UNTAGGABLE = {
    "aws_kms_alias",
    "aws_sqs_queue_redrive_allow_policy",
    "aws_ecr_lifecycle_policy",
    "random_password",
    "aws_iam_role_policy",
    "aws_iam_role_policy_attachment",
    "aws_lambda_permission",
    "aws_apigatewayv2_integration",
    "aws_apigatewayv2_route",
    "aws_apigatewayv2_route_response",
    "aws_apigatewayv2_deployment",
    "aws_apigatewayv2_api_mapping",
    "aws_api_gateway_account",
    "aws_cloudwatch_dashboard",
    "aws_secretsmanager_secret_version",
    "aws_sns_topic_subscription",
}


@pytest.mark.parametrize("path", ALL_TF, ids=lambda p: str(p.relative_to(MODULE_DIR)))
def test_tf_file_parses(path: Path) -> None:
    assert parse_file(path), f"{path} is empty"


def test_conventional_files_exist() -> None:
    for name in ("versions.tf", "variables.tf", "outputs.tf", "main.tf", "README.md"):
        assert (MODULE_DIR / name).is_file(), name
    for name in ("main.tf", "versions.tf", "variables.tf", "outputs.tf"):
        assert (EXAMPLE_DIR / name).is_file(), f"examples/complete/{name}"


def test_versions_pin_terraform_and_aws_provider(module: Module) -> None:
    [terraform] = module.files["versions.tf"]["terraform"]
    assert unquote(terraform["required_version"]) == ">= 1.5"
    aws = terraform["required_providers"][0]["aws"]
    assert unquote(aws["source"]) == "hashicorp/aws"
    assert re.fullmatch(r">= \d+\.\d+, < \d+\.\d+", unquote(aws["version"]))


def _dynamic_iterators(body: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(body, dict):
        for dynamic in body.get("dynamic", []):
            for name, spec in dynamic.items():
                names.add(unquote(spec.get("iterator", name)))
        for value in body.values():
            names |= _dynamic_iterators(value)
    elif isinstance(body, list):
        for value in body:
            names |= _dynamic_iterators(value)
    return names


def _blocks(module: Module) -> dict[str, Any]:
    """Every body but the variables' that can hold references, by "<kind> <name>"."""
    providers = [block for parsed in module.files.values() for block in parsed.get("provider", [])]
    tables = {"resource": module.resources, "data": module.data, "output": module.outputs}
    tables |= {"module": module.modules, "local": module.locals, "provider": dict(enumerate(providers))}
    return {f"{kind} {name}": body for kind, table in tables.items() for name, body in table.items()}


def _unresolved(module: Module, child_outputs: dict[str, set[str]]) -> list[str]:
    problems = []
    variables = {
        f"variable {k}": {n: x for n, x in v.items() if n != "type"} for k, v in module.variables.items()
    }
    for where, body in {**_blocks(module), **variables}.items():
        bound = _dynamic_iterators(body)
        for path in references(body):
            root = path[0]
            if root in BUILTIN_ROOTS or root in bound:
                continue
            if root == "var" and path[1] not in module.variables:
                problems.append(f"{where}: var.{path[1]} is not declared")
            elif root == "local" and path[1] not in module.locals:
                problems.append(f"{where}: local.{path[1]} is not declared")
            elif root == "data" and f"{path[1]}.{path[2]}" not in module.data:
                problems.append(f"{where}: data.{path[1]}.{path[2]} is not declared")
            elif root == "module":
                if path[1] not in module.modules:
                    problems.append(f"{where}: module.{path[1]} is not declared")
                elif len(path) > 2 and path[2] not in child_outputs.get(path[1], set()):
                    problems.append(f"{where}: module.{path[1]} has no output {path[2]}")
            elif (
                root not in ("var", "local", "data", "module") and f"{root}.{path[1]}" not in module.resources
            ):
                problems.append(f"{where}: {root}.{path[1]} is not declared")
    return problems


def test_every_reference_resolves_in_the_module(module: Module) -> None:
    assert _unresolved(module, {}) == []


def test_every_reference_resolves_in_the_example(example: Module, module: Module) -> None:
    assert _unresolved(example, {"chat": set(module.outputs)}) == []


def test_unresolved_reference_is_reported(seed: Module) -> None:
    assert any("is not declared" in p for p in _unresolved(seed, {}))


def test_example_passes_only_declared_variables_and_all_required_ones(
    example: Module, module: Module
) -> None:
    call = example.modules["chat"]
    assert unquote(call["source"]) == "../../"
    passed = set(call) - {"source", "providers", "depends_on", "count", "for_each"}
    assert passed - set(module.variables) == set()
    required = {name for name, body in module.variables.items() if "default" not in body}
    assert required - passed == set()


@pytest.mark.parametrize("which", ["module", "example"])
def test_every_variable_is_used(which: str, request: pytest.FixtureRequest) -> None:
    target: Module = request.getfixturevalue(which)
    used = {path[1] for body in _blocks(target).values() for path in references(body) if path[0] == "var"}
    assert set(target.variables) - used == set()


def test_variables_are_typed_and_described(module: Module) -> None:
    for name, body in module.variables.items():
        assert "type" in body, f"var.{name} has no type"
        assert unquote(body.get("description", "")).strip(), f"var.{name} has no description"


def test_variables_that_can_be_wrong_are_validated(module: Module) -> None:
    free_form = {"tags", "deletion_protection", "ecr_force_delete", "create_api_gateway_account_role"}
    for name, body in module.variables.items():
        if name in free_form or "bool" in str(body.get("type")):
            continue
        assert body.get("validation"), f"var.{name} has no validation block"


def test_outputs_are_described(module: Module) -> None:
    for name in ("websocket_url", "callback_url", "table_name", "ecr_repository_urls", "function_names"):
        assert name in module.outputs, name
    for name, body in module.outputs.items():
        assert unquote(body.get("description", "")).strip(), f"output {name} has no description"


# Resources that exist only when create_api_gateway_account_role is set (the region-wide logging role)
# or a custom domain is given.
OPT_IN = {
    "aws_iam_role.api_gateway_cloudwatch",
    "aws_iam_role_policy_attachment.api_gateway_cloudwatch",
    "aws_api_gateway_account.this",
    "aws_apigatewayv2_domain_name.this",
    "aws_apigatewayv2_api_mapping.this",
}
OPT_IN_VARIABLES = {
    "create_api_gateway_account_role": True,
    "custom_domain_name": "chat.example.com",
    "custom_domain_certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/1234abcd-12ab-34cd",
}


@pytest.mark.parametrize("variables", ["defaults", "complete", "opt_ins"])
def test_every_resource_and_output_evaluates(
    variables: str, module: Module, request: pytest.FixtureRequest
) -> None:
    if variables == "opt_ins":
        evaluator = with_values(request.getfixturevalue("complete"), **OPT_IN_VARIABLES)
    else:
        evaluator = request.getfixturevalue(variables)
    optional = set() if variables == "opt_ins" else set(OPT_IN)
    if not any(fn["route_response"] for fn in evaluator.local("functions").values()):
        optional.add("aws_apigatewayv2_route_response.this")  # one per function with route_response
    types = {address.split(".")[0] for address in module.resources}
    for rtype in sorted(types):
        found = {name.split("[")[0] for name, _ in evaluated(module, evaluator, rtype)}
        expected = {a for a in module.resources if a.split(".")[0] == rtype} - optional
        assert expected <= found, f"{variables}: no instance of {sorted(expected - found)}"
    for body in module.outputs.values():
        evaluator.value(body["value"])


def test_every_taggable_resource_is_tagged(module: Module, example: Module) -> None:
    for address, body in module.resources.items():
        if address.split(".")[0] not in UNTAGGABLE:
            assert "tags" in body, f"{address} has no tags"
            assert "local.tags" in str(body["tags"]), f"{address} does not carry local.tags"
    provider = example.files["main.tf"]["provider"][0]["aws"]
    assert provider.get("default_tags"), "the example sets no default_tags"


def test_image_digest_precondition_guards_the_functions(
    module: Module, defaults: Evaluator, complete: Evaluator
) -> None:
    body = module.resources["aws_lambda_function.this"]
    preconditions = body["lifecycle"][0]["precondition"]
    for key, inner in instances(module, complete, "aws_lambda_function.this").items():
        assert all(inner.value(p["condition"]) for p in preconditions), key
    for key, inner in instances(module, defaults, "aws_lambda_function.this").items():
        assert not all(inner.value(p["condition"]) for p in preconditions), f"{key} applies without a digest"


def test_variable_validations_accept_defaults(module: Module, defaults: Evaluator) -> None:
    for name, body in module.variables.items():
        for validation in body.get("validation", []):
            try:
                ok = defaults.value(validation["condition"])
            except HclError as error:
                raise AssertionError(f"var.{name}: {error}") from error
            assert ok, f"the default of var.{name} fails its own validation"


ROUTES = {
    "$connect",
    "$disconnect",
    "$default",
    "sendMessage",
    "getHistory",
    "sendDirect",
    "typing",
    "join",
    "leave",
    "listMembers",
}
FUNCTION_KEYS = {
    "route_key",
    "timeout",
    "memory_size",
    "environment",
    "dynamodb_actions",
    "manage_connections",
}


def test_functions_map_matches_lambdas_and_dockerfile(defaults: Evaluator) -> None:
    functions = defaults.local("functions")
    folders = {p.parent.name for p in (ROOT / "lambdas").glob("*/app.py")}
    targets = set(re.findall(r"^FROM base AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert set(functions) == folders == targets
    routes = [fn["route_key"] for fn in functions.values() if fn["route_key"] is not None]
    unrouted = {name for name, fn in functions.items() if fn["route_key"] is None}
    assert unrouted == {"fanout", "publish"}  # invoked by the SQS mapping / by a backend with IAM
    assert sorted(routes) == sorted(ROUTES)
    for name, fn in functions.items():
        assert set(fn) >= FUNCTION_KEYS, name
        if fn["route_key"] is not None:
            assert 1 <= fn["timeout"] <= 29, f"{name}: API Gateway gives an integration 29 s"
        assert 1 <= fn["timeout"] <= 900, f"{name}: Lambda runs a function 15 minutes at most"


def test_readme_lists_every_input_and_output(module: Module) -> None:
    readme = (MODULE_DIR / "README.md").read_text()
    for name in [*module.variables, *module.outputs]:
        assert f"| `{name}` |" in readme, f"terraform/README.md does not document {name}"


def test_every_table_and_index_has_throttle_alarms(module: Module, complete: Evaluator) -> None:
    """GSI throttles are reported under TableName + GlobalSecondaryIndexName only: one alarm pair each."""
    tables = dict(evaluated(module, complete, "aws_dynamodb_table"))
    assert set(tables) == {
        f"aws_dynamodb_table.{name}" for name in ("connections", "messages", "memberships")
    }
    connections_indexes = {
        gsi["name"] for gsi in tables["aws_dynamodb_table.connections"]["global_secondary_index"]
    }
    assert set(complete.local("table_indexes")) == connections_indexes, (
        "local.table_indexes is not the table's GSIs"
    )
    expected: dict[tuple[str, str | None], set[str]] = {}
    throttles = {"ReadThrottleEvents", "WriteThrottleEvents"}
    for address, table in tables.items():
        name = str(complete.value(f'"${{{address}.name}}"'))
        for index in [None, *(gsi["name"] for gsi in table.get("global_secondary_index", []))]:
            expected[(name, index)] = throttles
    alarmed: dict[tuple[str, str | None], set[str]] = {}
    for address, alarm in evaluated(module, complete, "aws_cloudwatch_metric_alarm"):
        if alarm["namespace"] != "AWS/DynamoDB":
            continue
        dimensions = alarm["dimensions"]
        assert set(dimensions) <= {"TableName", "GlobalSecondaryIndexName"}, address
        index = dimensions.get("GlobalSecondaryIndexName")
        assert ("index" in alarm["alarm_description"]) == (index is not None), alarm["alarm_description"]
        alarmed.setdefault((str(dimensions["TableName"]), index), set()).add(alarm["metric_name"])
    assert alarmed == expected


def test_a_shard_in_flight_is_never_handed_to_a_second_fanout_worker(defaults: Evaluator) -> None:
    queues = dict(evaluated(defaults.module, defaults, "aws_sqs_queue"))
    timeout = defaults.local("functions")["fanout"]["timeout"]
    # AWS advises six times the consumer's timeout (the mapping has no batching window).
    assert queues["aws_sqs_queue.fanout"]["visibility_timeout_seconds"] >= 6 * timeout
    redrive = json.loads(queues["aws_sqs_queue.fanout"]["redrive_policy"])
    assert redrive == {
        "deadLetterTargetArn": "${aws_sqs_queue.fanout_dlq.arn}",
        "maxReceiveCount": defaults.variables["fanout_max_receive_count"],
    }
    for queue in queues.values():
        assert str(queue["kms_master_key_id"]) == "${aws_kms_key.this.arn}"


def test_the_fanout_mapping_reports_partial_batch_failures_within_its_inputs(defaults: Evaluator) -> None:
    [(_, mapping)] = evaluated(defaults.module, defaults, "aws_lambda_event_source_mapping")
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["batch_size"] == defaults.variables["fanout_batch_size"]
    [scaling] = mapping["scaling_config"]
    assert scaling["maximum_concurrency"] == defaults.variables["fanout_max_concurrency"]


@pytest.mark.parametrize(
    ("concurrency", "pool", "ok"), [(4, 32, True), (6, 32, True), (7, 32, False), (50, 4, True)]
)
def test_the_plan_refuses_more_fanout_posts_than_the_account_limit(
    module: Module, defaults: Evaluator, concurrency: int, pool: int, ok: bool
) -> None:
    evaluator = with_values(defaults, fanout_max_concurrency=concurrency, broadcast_concurrency=pool)
    precondition = _mapping_precondition(module, "10,000")
    assert evaluator.value(precondition["condition"]) is ok
    # the default leaves headroom for every other API of the account
    assert defaults.local("fanout_posts_per_second") <= 0.7 * 10_000


def _mapping_precondition(module: Module, naming: str) -> dict[str, Any]:
    body = module.resources["aws_lambda_event_source_mapping.fanout"]
    [precondition] = [p for p in body["lifecycle"][0]["precondition"] if naming in p["error_message"]]
    return dict(precondition)


@pytest.mark.parametrize(
    ("batch", "shard", "pool", "ok"),
    [
        (1, 2_000, 32, True),  # the defaults: 1.25 s
        (10, 2_000, 32, True),  # 12.5 s
        (10, 20_000, 32, False),  # 125 s: the largest inputs the variables allow
        (1, 20_000, 32, True),  # 12.5 s
        (5, 20_000, 32, False),  # 62.5 s
        (1, 2_000, 1, False),  # 40 s: one post at a time
        (10, 20_000, 200, True),  # 20 s
    ],
)
def test_the_plan_refuses_a_fanout_batch_that_cannot_finish_in_half_the_fanout_timeout(
    module: Module, defaults: Evaluator, batch: int, shard: int, pool: int, ok: bool
) -> None:
    evaluator = with_values(
        defaults, fanout_batch_size=batch, fanout_shard_size=shard, broadcast_concurrency=pool
    )
    precondition = _mapping_precondition(module, "half of the fanout function's timeout")
    assert evaluator.value(precondition["condition"]) is ok
    timeout = defaults.local("functions")["fanout"]["timeout"]
    assert (batch * shard * 0.02 / pool <= timeout / 2) is ok  # the arithmetic the message states
