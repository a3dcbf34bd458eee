"""What a first deploy needs (issue 10, "Deploy"): it applies on a new account, its alarms page on real errors
only, a setting that cannot work fails at plan naming the variable to set, a second region does not collide,
and an optional custom domain. Preconditions are evaluated here as ``terraform plan`` evaluates them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from local_stack.hcl import Evaluator, Module, expand_dynamic, instances
from tests.iac import ROOT, readme_section, with_values
from tests.iac.gotchas import evaluated

STAGE = "aws_apigatewayv2_stage.this"
REGION = "${data.aws_region.current.region}"  # how the evaluator renders the unknown region
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab"
JWKS = {
    "jwt_secret_arn": None,
    "jwt_jwks_url": "https://idp.example/.well-known/jwks.json",
    "jwt_algorithms": ["RS256"],
}


def failed_preconditions(module: Module, evaluator: Evaluator, address: str) -> list[str]:
    """The error messages of the preconditions of ``address`` that fail with these variables."""
    body = module.resources[address]
    messages = []
    for key, inner in instances(module, evaluator, address).items():
        for lifecycle in body.get("lifecycle", []):
            for precondition in lifecycle.get("precondition", []):
                if not inner.value(precondition["condition"]):
                    messages.append(f"{key}: {inner.value(precondition['error_message'])}")
    return messages


def test_example_reserves_no_concurrency(example: Module) -> None:
    # A reservation must leave 100 unreserved executions; a new account often has 10 in all.
    assert "reserved_concurrency" not in example.modules["chat"]


def test_readme_says_when_to_reserve_concurrency() -> None:
    section = readme_section("## Reserved concurrency")
    assert "100" in section and "reserved_concurrency" in section


def alarms(module: Module, evaluator: Evaluator) -> list[dict[str, Any]]:
    return [alarm for _, alarm in evaluated(module, evaluator, "aws_cloudwatch_metric_alarm")]


def test_no_alarm_on_integration_error(module: Module, complete: Evaluator) -> None:
    # IntegrationError counts every 4xx a function returns: each 401/400/403 of a refused handshake.
    assert [a["alarm_name"] for a in alarms(module, complete) if a["metric_name"] == "IntegrationError"] == []


def emitted_error_metrics() -> set[str]:
    """Every metric the functions count whose name says it is an error (count("...Errors"))."""
    names: set[str] = set()
    for path in [*(ROOT / "lambdas").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]:
        names |= set(re.findall(r"""count\(\s*["']([A-Za-z]*Errors)["']""", path.read_text()))
    return names


def test_every_error_metric_the_functions_emit_has_an_alarm(module: Module, complete: Evaluator) -> None:
    emitted = emitted_error_metrics()
    assert {"InternalErrors", "ConnectionStoreErrors"} <= emitted, emitted
    namespace, service = complete.variables["metrics_namespace"], complete.variables["name"]
    alarmed = {
        a["metric_name"]
        for a in alarms(module, complete)
        # Powertools' EMF: the namespace of POWERTOOLS_METRICS_NAMESPACE, one dimension "service".
        if a["namespace"] == namespace and a["dimensions"] == {"service": service} and a["threshold"] == 0
    }
    assert emitted - alarmed == set(), f"no alarm on {sorted(emitted - alarmed)}"


def test_the_emf_alarm_dimensions_are_what_the_functions_get(complete: Evaluator) -> None:
    common = complete.local("common_env")
    assert common["POWERTOOLS_SERVICE_NAME"] == complete.variables["name"]
    assert common["POWERTOOLS_METRICS_NAMESPACE"] == complete.variables["metrics_namespace"]


def test_functions_and_execution_errors_still_page(module: Module, complete: Evaluator) -> None:
    metrics = {(a["namespace"], a["metric_name"]) for a in alarms(module, complete)}
    assert {("AWS/ApiGateway", "ExecutionError"), ("AWS/Lambda", "Errors")} <= metrics


@pytest.mark.parametrize("level", ["ERROR", "INFO"])
def test_execution_logging_without_the_role_fails_at_plan(
    module: Module, complete: Evaluator, level: str
) -> None:
    without = with_values(complete, execution_logging_level=level)
    [message] = failed_preconditions(module, without, STAGE)
    roles = ("create_api_gateway_account_role", "api_gateway_cloudwatch_role_configured")
    assert all(role in message for role in roles)
    for role in roles:
        assert failed_preconditions(module, with_values(without, **{role: True}), STAGE) == []
    assert failed_preconditions(module, complete, STAGE) == []


@pytest.mark.parametrize("create", [False, True])
@pytest.mark.parametrize("configured", [False, True])
def test_access_logs_are_on_exactly_when_the_role_is(
    module: Module, complete: Evaluator, create: bool, configured: bool
) -> None:
    evaluator = with_values(
        complete, create_api_gateway_account_role=create, api_gateway_cloudwatch_role_configured=configured
    )
    [stage] = instances(module, evaluator, STAGE).values()
    assert bool(expand_dynamic(stage, module.resources[STAGE], "access_log_settings")) == (
        create or configured
    )


def test_iam_role_names_carry_the_region(module: Module, complete: Evaluator) -> None:
    names = [role["name"] for _, role in evaluated(module, complete, "aws_iam_role")]
    opt_in = with_values(complete, create_api_gateway_account_role=True)
    names += [role["name"] for _, role in evaluated(module, opt_in, "aws_iam_role")]
    assert names and all(REGION in str(name) for name in names), names


def test_dashboard_name_carries_the_region(module: Module, complete: Evaluator) -> None:
    [(_, dashboard)] = evaluated(module, complete, "aws_cloudwatch_dashboard")
    assert REGION in str(dashboard["dashboard_name"])


def test_role_names_fit_iam_with_the_longest_name_and_region(complete: Evaluator) -> None:
    evaluator = with_values(complete, name="a" * 32)  # var.name's validation allows 32 characters
    for key, name in evaluator.local("role_names").items():
        real = str(name).replace(REGION, "ap-southeast-2")  # 14 characters, the longest region names
        assert len(real) <= 64, f"{key}: {real}"


def test_role_name_precondition_catches_an_overlong_name(module: Module, complete: Evaluator) -> None:
    evaluator = with_values(complete, name="a" * 60)  # past var.name's validation, to see the guard
    assert failed_preconditions(module, evaluator, "aws_iam_role.function")


def test_jwks_without_issuer_or_audience_fails_at_plan(module: Module, complete: Evaluator) -> None:
    for missing in ({}, {"jwt_issuer": "https://idp.example/"}, {"jwt_audience": "chat"}):
        evaluator = with_values(complete, **JWKS, **missing)
        [message] = failed_preconditions(module, evaluator, "aws_lambda_function.this")
        assert message.startswith("connect:") and "jwt_issuer" in message and "jwt_audience" in message
        assert "jwt_allow_any_issuer_audience_unsafe" in message
    both = with_values(complete, **JWKS, jwt_issuer="https://idp.example/", jwt_audience="chat")
    assert failed_preconditions(module, both, "aws_lambda_function.this") == []
    unsafe = with_values(complete, **JWKS, jwt_allow_any_issuer_audience_unsafe=True)
    assert failed_preconditions(module, unsafe, "aws_lambda_function.this") == []


def test_unsafe_opt_out_reaches_the_connect_function(complete: Evaluator) -> None:
    assert complete.local("function_env")["connect"]["JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE"] == "false"
    unsafe = with_values(complete, jwt_allow_any_issuer_audience_unsafe=True)
    assert unsafe.local("function_env")["connect"]["JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE"] == "true"


@pytest.mark.parametrize("name", ["jwt_issuer", "jwt_audience"])
def test_blank_issuer_or_audience_is_refused(module: Module, defaults: Evaluator, name: str) -> None:
    [validation] = module.variables[name]["validation"]
    assert not with_values(defaults, **{name: "  "}).value(validation["condition"])
    assert with_values(defaults, **{name: "x"}).value(validation["condition"])


def test_custom_domain_is_off_by_default(module: Module, complete: Evaluator) -> None:
    assert instances(module, complete, "aws_apigatewayv2_domain_name.this") == {}
    assert instances(module, complete, "aws_apigatewayv2_api_mapping.this") == {}
    assert complete.value(module.outputs["custom_domain_websocket_url"]["value"]) is None


def test_custom_domain_maps_the_stage_and_outputs_its_url(module: Module, complete: Evaluator) -> None:
    evaluator = with_values(
        complete, custom_domain_name="chat.example.com", custom_domain_certificate_arn=CERTIFICATE
    )
    [(_, domain)] = evaluated(module, evaluator, "aws_apigatewayv2_domain_name")
    [configuration] = domain["domain_name_configuration"]
    assert domain["domain_name"] == "chat.example.com"
    assert configuration == {
        "certificate_arn": CERTIFICATE,
        "endpoint_type": "REGIONAL",
        "security_policy": "TLS_1_2",
    }
    [(_, mapping)] = evaluated(module, evaluator, "aws_apigatewayv2_api_mapping")
    assert str(mapping["stage"]) == "${aws_apigatewayv2_stage.this.id}"
    assert "api_mapping_key" not in mapping  # the stage at the root: wss://chat.example.com
    url = evaluator.value(module.outputs["custom_domain_websocket_url"]["value"])
    assert url == "wss://${aws_apigatewayv2_domain_name.this[0].domain_name}"
    assert failed_preconditions(module, evaluator, "aws_apigatewayv2_domain_name.this") == []


def test_custom_domain_without_certificate_fails_at_plan(module: Module, complete: Evaluator) -> None:
    evaluator = with_values(complete, custom_domain_name="chat.example.com")
    [message] = failed_preconditions(module, evaluator, "aws_apigatewayv2_domain_name.this")
    assert "custom_domain_certificate_arn" in message


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("custom_domain_name", "chat.example.com", True),
        ("custom_domain_name", "Chat.Example.com", False),
        ("custom_domain_name", "https://chat.example.com", False),
        ("custom_domain_name", "localhost", False),
        ("custom_domain_certificate_arn", CERTIFICATE, True),
        ("custom_domain_certificate_arn", "arn:aws:iam::123456789012:server-certificate/x", False),
    ],
)
def test_custom_domain_inputs_are_validated(
    module: Module, defaults: Evaluator, name: str, value: str, ok: bool
) -> None:
    [validation] = module.variables[name]["validation"]
    assert bool(with_values(defaults, **{name: value}).value(validation["condition"])) == ok


def test_readme_documents_hosting_the_web_client() -> None:
    section = readme_section("## Host the browser client")
    for needed in ("S3", "CloudFront", "websocket_url", "custom_domain_websocket_url", "token"):
        assert needed in section, needed
