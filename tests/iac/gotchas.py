"""The Terraform rules of docs/aws-behaviour.md, each a check returning the problems it finds in a module.

test_gotchas.py runs every check on terraform/ (no problem allowed) and on the seed article's HCL in
fixtures/seed/ (at least one problem required), so no check can pass by looking at nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from local_stack.hcl import (
    Evaluator,
    HclError,
    Module,
    Ref,
    expand_dynamic,
    expression_source,
    instances,
    parse_expression,
    references,
    unquote,
)

Problems = list[str]
Found = Iterator[str]
Check = Callable[[Module, Evaluator], Problems]
CHECKS: dict[str, Check] = {}


def check(function: Callable[[Module, Evaluator], Found]) -> Check:
    def run(module: Module, evaluator: Evaluator) -> Problems:
        return list(function(module, evaluator))

    CHECKS[function.__name__] = run
    return run


def of_type(module: Module, rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for address, body in module.resources.items():
        if address.split(".")[0] == rtype:
            yield address, body


def evaluated(module: Module, evaluator: Evaluator, rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every instance of every resource of a type, its attributes evaluated (blocks stay lists)."""
    for address, body in of_type(module, rtype):
        for key, inner in instances(module, evaluator, address).items():
            attrs = {
                name: inner.value(value)
                for name, value in body.items()
                if name not in ("depends_on", "lifecycle", "dynamic", "provider")
            }
            yield (address if key is None else f"{address}[{json.dumps(key)}]"), attrs


def graph(module: Module) -> dict[str, set[str]]:
    """Resource/data dependency edges from references and depends_on (what Terraform orders by)."""
    blocks = {**module.resources, **{f"data.{k}": v for k, v in module.data.items()}}
    local_refs: dict[str, set[str]] = {}

    def targets(raw: Any, seen: frozenset[str]) -> set[str]:
        found: set[str] = set()
        for path in references(raw):
            if path[0] == "local" and len(path) > 1 and path[1] not in seen and path[1] in module.locals:
                if path[1] not in local_refs:
                    local_refs[path[1]] = targets(module.locals[path[1]], seen | {path[1]})
                found |= local_refs[path[1]]
            elif path[0] == "data" and len(path) > 2:
                found.add(f"data.{path[1]}.{path[2]}")
            elif len(path) > 1 and f"{path[0]}.{path[1]}" in module.resources:
                found.add(f"{path[0]}.{path[1]}")
        return found

    return {
        address: targets({k: v for k, v in body.items() if k != "lifecycle"}, frozenset())
        for address, body in blocks.items()
    }


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(edges.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def policy_statements(module: Module, evaluator: Evaluator) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """(policy address, {"actions": [...], "resources": [...]}) per Allow statement of every IAM policy."""
    for rtype in ("aws_iam_role_policy", "aws_iam_policy"):
        for address, attrs in evaluated(module, evaluator, rtype):
            policy = attrs["policy"]
            if isinstance(policy, Ref) and policy.address.startswith("data.aws_iam_policy_document."):
                match = re.fullmatch(
                    r"data\.aws_iam_policy_document\.(\w+)(?:\[(\".*\")\])?\.json", policy.address
                )
                assert match is not None, policy.address
                name, key = match.group(1), json.loads(match.group(2)) if match.group(2) else None
                inner = instances(module, evaluator, f"data.aws_iam_policy_document.{name}")[key]
                document = module.data[f"aws_iam_policy_document.{name}"]
                statements = [
                    {
                        "Effect": s.get("effect", "Allow"),
                        "Action": list(s.get("actions", [])),
                        "Resource": s.get("resources", []),
                    }
                    for s in expand_dynamic(inner, document, "statement")
                ]
            elif isinstance(policy, str):
                statements = json.loads(policy)["Statement"]
            else:
                raise HclError(f"{address}: policy is neither jsonencode() nor an aws_iam_policy_document")
            for statement in statements:
                if statement.get("Effect") == "Allow":
                    actions = _listed(statement.get("Action", []))
                    yield address, {"actions": actions, "resources": _strings(statement.get("Resource", []))}


def _strings(value: Any) -> list[str]:
    return [str(item) for item in _listed(value)]


# --------------------------------------------------------------------------------------------- DynamoDB


@check
def dynamodb_attributes_are_only_keys(module: Module, evaluator: Evaluator) -> Found:
    for address, table in evaluated(module, evaluator, "aws_dynamodb_table"):
        keys = {table.get("hash_key"), table.get("range_key")}
        for gsi in table.get("global_secondary_index", []):
            keys |= {gsi.get("hash_key"), gsi.get("range_key")}
        for attribute in table.get("attribute", []):
            if attribute["name"] not in keys:
                yield f"{address}: attribute {attribute['name']!r} is not a key (all must be indexed)"


@check
def dynamodb_indexes_project_ttl(module: Module, evaluator: Evaluator) -> Found:
    for address, table in evaluated(module, evaluator, "aws_dynamodb_table"):
        for gsi in table.get("global_secondary_index", []):
            projection = gsi.get("projection_type")
            if projection is None:
                yield f"{address}: GSI {gsi['name']} has no projection_type"
            elif projection == "KEYS_ONLY" or (
                projection == "INCLUDE" and "ttl" not in gsi.get("non_key_attributes", [])
            ):
                yield f"{address}: GSI {gsi['name']} does not project ttl (expired records can't be skipped)"


@check
def dynamodb_table_settings_are_explicit(module: Module, evaluator: Evaluator) -> Found:
    for address, table in evaluated(module, evaluator, "aws_dynamodb_table"):
        if table.get("billing_mode") != "PAY_PER_REQUEST":
            yield f"{address}: billing_mode must be PAY_PER_REQUEST (it defaults to PROVISIONED)"
        if not any(p.get("enabled") for p in table.get("point_in_time_recovery", [])):
            yield f"{address}: point-in-time recovery is off"
        sse = table.get("server_side_encryption", [])
        if not (sse and sse[0].get("enabled") and sse[0].get("kms_key_arn")):
            yield f"{address}: no server-side encryption with a customer-managed key"
        if "deletion_protection_enabled" not in table:
            yield f"{address}: deletion protection is not set"
        ttl = table.get("ttl", [])
        if not (ttl and ttl[0].get("enabled") and ttl[0].get("attribute_name") == "ttl"):
            yield f"{address}: TTL on attribute ttl is not enabled"


# --------------------------------------------------------------------------------------------- API Gateway


@check
def websocket_api_selects_routes_by_action(module: Module, evaluator: Evaluator) -> Found:
    apis = list(evaluated(module, evaluator, "aws_apigatewayv2_api"))
    if not apis:
        yield "no aws_apigatewayv2_api"
    for address, api in apis:
        selection = api.get("route_selection_expression")
        if api.get("protocol_type") != "WEBSOCKET" or selection != "$request.body.action":
            yield f"{address}: route_selection_expression is {selection!r}"


@check
def alarms_use_api_id_and_stage(module: Module, evaluator: Evaluator) -> Found:
    alarms = [
        (address, alarm)
        for address, alarm in evaluated(module, evaluator, "aws_cloudwatch_metric_alarm")
        if alarm.get("namespace") == "AWS/ApiGateway"
    ]
    for address, alarm in alarms:
        dimensions = set(alarm.get("dimensions", {}))
        if dimensions not in ({"ApiId"}, {"ApiId", "Stage"}):
            yield f"{address}: dimensions {sorted(dimensions)} (WebSocket metrics have ApiId and ApiId+Stage)"
    if not alarms:
        yield "no alarm on AWS/ApiGateway metrics"


@check
def dashboard_metrics_are_metric_arrays(module: Module, evaluator: Evaluator) -> Found:
    """PutDashboard wants each `metrics` entry to be one metric array ([namespace, name, dim, value, ...,
    {options}]): flatten() over nested for-expressions merges them all into a single list of strings."""
    dashboards = list(evaluated(module, evaluator, "aws_cloudwatch_dashboard"))
    if not dashboards:
        yield "no aws_cloudwatch_dashboard"
    for address, dashboard in dashboards:
        for widget in json.loads(str(dashboard.get("dashboard_body", "{}"))).get("widgets", []):
            properties = widget.get("properties", {})
            if widget.get("type") != "metric" or "metrics" not in properties:
                continue
            title = properties.get("title", "?")
            metrics = properties["metrics"]
            if not isinstance(metrics, list) or not metrics:
                yield f"{address}: widget {title!r} has no metrics list"
                continue
            for entry in metrics:
                options = isinstance(entry, list) and entry and isinstance(entry[-1], dict)
                strings = entry[:-1] if options else entry
                if not (
                    isinstance(strings, list)
                    and len(strings) >= 2
                    and all(isinstance(item, str) for item in strings)
                ):
                    yield (
                        f"{address}: widget {title!r} metric {entry!r} is not a list of strings"
                        " (PutDashboard rejects it)"
                    )


@check
def stage_has_explicit_deployment(module: Module, evaluator: Evaluator) -> Found:
    stages = list(of_type(module, "aws_apigatewayv2_stage"))
    if not stages:
        yield "no aws_apigatewayv2_stage"
    for address, stage in stages:
        if unquote(stage.get("auto_deploy", False)) in (True, "true"):
            yield f"{address}: auto_deploy is for HTTP APIs; WebSocket stages need an explicit deployment"
        targets = {p[:2] for p in references(stage.get("deployment_id", '"none"'))}
        deployments = [f"{t}.{n}" for t, n in targets if t == "aws_apigatewayv2_deployment"]
        if not deployments:
            yield f"{address}: deployment_id does not reference an aws_apigatewayv2_deployment"
        for deployment in deployments:
            body = module.resources.get(deployment, {})
            if "triggers" not in body:
                yield f"{deployment}: no triggers (route and integration changes are never deployed)"
            if unquote(body.get("lifecycle", [{}])[0].get("create_before_destroy")) not in (True, "true"):
                yield f"{deployment}: no create_before_destroy"


@check
def execution_logging_is_opt_in(module: Module, evaluator: Evaluator) -> Found:
    role = any(
        evaluator.variables.get(name) is True
        for name in ("create_api_gateway_account_role", "api_gateway_cloudwatch_role_configured")
    )
    for address, stage in of_type(module, "aws_apigatewayv2_stage"):
        for settings in stage.get("default_route_settings", [{}]):
            raw = settings.get("logging_level", '"OFF"')
            if (value := evaluator.value(raw)) != "OFF":
                yield f"{address}: logging_level {value!r} by default needs the account's CloudWatch role"
            if not any(p[0] == "var" for p in references(raw)):
                yield f"{address}: logging_level is not a variable (execution logging must be opt-in)"
        # Access logs need the same account-wide role ("CloudWatch Logs role ARN must be set in account
        # settings to enable logging"): only a dynamic block gated on a variable can leave them off.
        if stage.get("access_log_settings"):
            yield f"{address}: access_log_settings is unconditional (it needs the account's CloudWatch role)"
        for stage_instance in instances(module, evaluator, address).values():
            if expand_dynamic(stage_instance, stage, "access_log_settings") and not role:
                yield f"{address}: access logs are on by default (the account may have no role)"


@check
def lambda_permissions_name_the_exact_route(module: Module, evaluator: Evaluator) -> Found:
    permissions = list(evaluated(module, evaluator, "aws_lambda_permission"))
    if not permissions:
        yield "no aws_lambda_permission"
        return
    stages = {str(stage.get("name")) for _, stage in evaluated(module, evaluator, "aws_apigatewayv2_stage")}
    routes = function_routes(module, evaluator)
    route_keys = set(routes.values()) or {
        str(route.get("route_key")) for _, route in evaluated(module, evaluator, "aws_apigatewayv2_route")
    }
    for address, permission in permissions:
        source = str(permission.get("source_arn", ""))
        # "${aws_apigatewayv2_api.<x>.execution_arn}/<stage>/<route key>": the whole ARN, not just its end.
        match = re.fullmatch(r"\$\{aws_apigatewayv2_api\.\w+\.execution_arn\}/([^/]+)/([^/]+)", source)
        if match is None:
            yield (
                f"{address}: source_arn {source!r} is not ${{aws_apigatewayv2_api.<x>.execution_arn}}"
                "/{stage}/{route_key}"
            )
            continue
        stage, route = match.groups()
        if stage not in stages:
            yield f"{address}: source_arn {source!r} names no stage of the module ({sorted(stages)})"
        function = _referenced_instance(permission.get("function_name"))
        expected = routes.get(function)
        if expected is not None and route != expected:
            yield f"{address}: source_arn {source!r} is not the route of {function} ({expected})"
        elif route not in route_keys:
            yield f"{address}: source_arn {source!r} names none of the routes"


def _referenced_instance(value: Any) -> str:
    """'aws_lambda_function.this["a"]' of a reference such as ${aws_lambda_function.this["a"].arn}."""
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return text.rsplit(".", 1)[0]


def function_routes(module: Module, evaluator: Evaluator) -> dict[str, str]:
    """Function instance address -> route key of the route whose integration invokes it."""
    integrations = {
        address: _referenced_instance(integration.get("integration_uri"))
        for address, integration in evaluated(module, evaluator, "aws_apigatewayv2_integration")
    }
    routes = {}
    for _, route in evaluated(module, evaluator, "aws_apigatewayv2_route"):
        target = re.fullmatch(r"integrations/\$\{(.+)\.id\}", str(route.get("target", "")))
        if target and target.group(1) in integrations:
            routes[integrations[target.group(1)]] = str(route.get("route_key"))
    return routes


@check
def callback_url_does_not_depend_on_the_stage(module: Module, evaluator: Evaluator) -> Found:
    edges = graph(module)
    for address, _ in of_type(module, "aws_lambda_function"):
        if stages := {n for n in reachable(edges, address) if n.startswith("aws_apigatewayv2_stage.")}:
            yield f"{address} depends on {sorted(stages)}: a cycle through deployment, routes, integrations"


@check
def dependency_graph_is_acyclic(module: Module, evaluator: Evaluator) -> Found:
    edges = graph(module)
    yield from (f"{address} depends on itself" for address in edges if address in reachable(edges, address))


# --------------------------------------------------------------------------------------------- Lambda


@check
def image_functions_are_deployed_by_digest(module: Module, evaluator: Evaluator) -> Found:
    functions = list(of_type(module, "aws_lambda_function"))
    if not functions:
        yield "no aws_lambda_function"
    for address, body in functions:
        if unquote(body.get("package_type")) != "Image":
            yield f"{address}: package_type is not Image"
        for argument in ("handler", "runtime", "layers"):
            if argument in body:
                yield f"{address}: {argument} is not allowed with package_type = Image"
        source = expression_source(body.get("image_uri", '""'))
        template = parse_expression(source)
        tail = template[1][-1] if template[0] == "tmpl" else None
        if not (isinstance(template[1], list) and any(isinstance(p, str) and "@" in p for p in template[1])):
            yield f"{address}: image_uri {source} is not pinned by digest (repo@sha256:...)"
        elif isinstance(tail, str) and ":" in tail:
            yield f"{address}: image_uri {source} ends with a tag"


@check
def each_function_has_its_own_role(module: Module, evaluator: Evaluator) -> Found:
    seen: dict[str, str] = {}
    for address, function in evaluated(module, evaluator, "aws_lambda_function"):
        role = str(function.get("role"))
        if role in seen:
            yield f"{address} shares its role with {seen[role]}"
        seen[role] = address


@check
def each_function_has_a_log_group_created_first(module: Module, evaluator: Evaluator) -> Found:
    groups = {str(g.get("name")) for _, g in evaluated(module, evaluator, "aws_cloudwatch_log_group")}
    edges = graph(module)
    for address, function in evaluated(module, evaluator, "aws_lambda_function"):
        name = str(function.get("function_name"))
        group = function.get("logging_config", [{}])[0].get("log_group", f"/aws/lambda/{name}")
        if isinstance(group, Ref) and group.address.startswith("aws_cloudwatch_log_group."):
            continue
        if str(group) not in groups:
            yield f"{address}: no aws_cloudwatch_log_group named {group}"
        elif not any(n.startswith("aws_cloudwatch_log_group.") for n in edges.get(address.split("[")[0], ())):
            yield f"{address}: does not depend on its log group (Lambda would create it first)"


@check
def functions_are_traced_and_encrypted(module: Module, evaluator: Evaluator) -> Found:
    for address, function in evaluated(module, evaluator, "aws_lambda_function"):
        if function.get("tracing_config", [{}])[0].get("mode") != "Active":
            yield f"{address}: X-Ray tracing is not Active"
        if not function.get("kms_key_arn"):
            yield f"{address}: environment not encrypted with a customer-managed key"
        if "reserved_concurrent_executions" not in function:
            yield f"{address}: reserved concurrency is not set"


# --------------------------------------------------------------------------------------------- IAM, ECR


@check
def iam_grants_no_scan_or_wildcards(module: Module, evaluator: Evaluator) -> Found:
    for address, statement in policy_statements(module, evaluator):
        for action in statement["actions"]:
            if action == "dynamodb:Scan" or "*" in action:
                yield f"{address}: grants {action}"
        for resource in statement["resources"]:
            if "*" in resource and not wildcard_is_needed(statement["actions"], resource):
                yield f"{address}: grants {statement['actions']} on the wildcard {resource}"


def wildcard_is_needed(actions: list[str], resource: str) -> bool:
    """The only wildcards this design needs: X-Ray (no resource-level permissions), the stage's
    connections (one ARN per connection id) and a log group's streams ("<log group arn>:*")."""
    if not actions:
        return False
    if resource == "*":
        return all(action.startswith("xray:") for action in actions)
    if resource.endswith("/POST/@connections/*") and resource.count("*") == 1:
        return actions == ["execute-api:ManageConnections"]
    if resource.endswith(":*") and resource.count("*") == 1:
        group = resource.removesuffix(":*")
        return all(action.startswith("logs:") for action in actions) and (
            group.startswith("${aws_cloudwatch_log_group.") or ":log-group:" in group
        )
    return False


@check
def manage_connections_is_post_on_the_stage(module: Module, evaluator: Evaluator) -> Found:
    stages = {str(stage.get("name")) for _, stage in evaluated(module, evaluator, "aws_apigatewayv2_stage")}
    found = False
    for address, statement in policy_statements(module, evaluator):
        if "execute-api:ManageConnections" not in statement["actions"]:
            continue
        found = True
        for resource in statement["resources"]:
            match = re.fullmatch(
                r"\$\{aws_apigatewayv2_api\.\w+\.execution_arn\}/([A-Za-z0-9_-]+)/POST/@connections/\*",
                resource,
            )
            if match is None or match.group(1) not in stages:
                yield (
                    f"{address}: ManageConnections on {resource} (only "
                    "${aws_apigatewayv2_api.<x>.execution_arn}/{stage}/POST/@connections/*)"
                )
    if not found:
        yield "no policy grants execute-api:ManageConnections"


@check
def ecr_repositories_are_hardened(module: Module, evaluator: Evaluator) -> Found:
    repositories = list(evaluated(module, evaluator, "aws_ecr_repository"))
    if not repositories:
        yield "no aws_ecr_repository"
        return
    for address, repo in repositories:
        if repo.get("image_tag_mutability") != "IMMUTABLE":
            yield f"{address}: tags are mutable"
        if not repo.get("image_scanning_configuration", [{}])[0].get("scan_on_push"):
            yield f"{address}: no scan on push"
        encryption = repo.get("encryption_configuration", [{}])[0]
        if encryption.get("encryption_type") != "KMS" or not encryption.get("kms_key"):
            yield f"{address}: not encrypted with a customer-managed KMS key"
    if not list(of_type(module, "aws_ecr_lifecycle_policy")):
        yield "no aws_ecr_lifecycle_policy"
