"""The Lambda runtime: environment from Terraform, errors like AWS, RIE endpoint, reload, DynamoDB."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from local_stack import Stack, StackConfig, StackThread
from local_stack import testing as kit
from local_stack.cli import generate_event
from local_stack.stack import function_environment, readable_log_line
from local_stack.terraform import TerraformError, load_model
from shared.config import AuthConfig
from tests.support.records import put_record

from .helpers import (
    FUNCTIONS,
    REPO,
    TF_FULL,
    TF_NO_DEFAULT,
    aws_client,
    connect,
    request,
    start_failure,
    test_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def rie_post(url: str, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read()), dict(response.headers)


def test_function_that_fails_to_import_is_reported_clearly(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        frame = request(ws, {"action": "broken"})
    assert frame.startswith('{"message": "Internal server error", "connectionId":"')
    logs = "\n".join(test_stack.function_logs("broken"))
    assert "Runtime.ImportModuleError" in logs
    assert "No module named 'module_that_does_not_exist'" in logs
    assert test_stack.pools["broken"].last_init_error is not None
    assert test_stack.pools["broken"].last_init_error["errorType"] == "Runtime.ImportModuleError"


def test_init_error_reaches_rie_caller(test_stack: Stack) -> None:
    body, headers = rie_post(test_stack.pools["broken"].invoke_url, {"hello": 1})
    assert headers.get("X-Amz-Function-Error") == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"


def test_handler_error_reported_like_lambda(test_stack: Stack) -> None:
    body, headers = rie_post(test_stack.pools["boom"].invoke_url, {"requestContext": {}})
    assert headers.get("X-Amz-Function-Error") == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "boom on purpose"
    assert isinstance(body["stackTrace"], list) and body["requestId"]


def test_rie_endpoint_invokes_the_function(test_stack: Stack) -> None:
    body, headers = rie_post(test_stack.pools["echo"].invoke_url, {"requestContext": {"routeKey": "rie"}})
    assert "X-Amz-Function-Error" not in headers
    assert json.loads(body["body"])["event"] == {"requestContext": {"routeKey": "rie"}}
    assert test_stack.pools["echo"].invoke_url.endswith("/2015-03-31/functions/function/invocations")


def test_timeout_answers_sandbox_timedout(test_stack: Stack) -> None:
    started = time.monotonic()
    body, headers = rie_post(test_stack.pools["slow"].invoke_url, {"body": json.dumps({"seconds": 10})})
    assert 2.5 < time.monotonic() - started < 8
    assert headers.get("X-Amz-Function-Error") == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in body["errorMessage"]


def test_context_deadline_comes_from_terraform_timeout(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        reply = json.loads(request(ws, {"action": "echo"}))
    assert 5000 < reply["remaining_ms"] <= 7000  # echo's timeout is 7 s


def test_environment_from_terraform_with_local_values(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        reply = json.loads(request(ws, {"action": "env"}))
    env = reply["env"]
    task_root = str((FUNCTIONS / "env").resolve())
    assert env["DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"] == "chat_connections"
    assert env["WEBSOCKET_CALLBACK_URL"] == test_stack.callback_url
    assert env["TEST_NUMBER"] == "4096" and env["TEST_JOINED"] == "HS256,RS256"
    assert env["TEST_LITERAL"] == "literal-value"
    assert env["JWT_SECRET_ARN"] == "" and env["JWT_SECRET"] == test_stack.config.jwt_secret
    assert env["JWT_ALGORITHMS"] == "HS256"
    assert env["EVENT_LOG_DIR"]  # from common_env
    expected = {
        "AWS_LAMBDA_FUNCTION_NAME": "env",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/env",
        "AWS_REGION": "us-east-1",
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": task_root,
        "TZ": "UTC",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL_DYNAMODB": test_stack.dynamodb_endpoint,
    }
    assert {k: env.get(k) for k in expected} == expected
    for name in ("AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY_ID"):
        assert env.get(name)
    assert env.get("AWS_SECRET_ACCESS_KEY")
    assert env["PYTHONPATH"].split(":")[:2] == [task_root, str(FUNCTIONS.parent.parent.parent)]
    assert reply["cwd"] == task_root


def test_table_created_from_terraform(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        reply = json.loads(request(ws, {"action": "env"}))
    assert reply["key_schema"] == [{"AttributeName": "connection_id", "KeyType": "HASH"}]
    assert reply["indexes"] == ["room_id-index", "user_id-index"]
    assert reply["ttl"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    dynamodb = aws_client("dynamodb", test_stack.dynamodb_endpoint)
    table = dynamodb.describe_table(TableName="chat_connections")["Table"]
    room = next(i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == "room_id-index")
    assert room["Projection"]["ProjectionType"] == "INCLUDE"
    assert "ttl" in room["Projection"]["NonKeyAttributes"]


def test_ttl_reaper_deletes_expired_items(test_stack: Stack) -> None:
    client = aws_client("dynamodb", test_stack.dynamodb_endpoint)
    now = int(time.time())
    put_record(client, "expired-item", "r", ttl=now - 10, memberships=False)
    put_record(client, "live-item", "r", ttl=now + 3600, memberships=False)

    def gone() -> bool:
        return "Item" not in client.get_item(
            TableName="chat_connections", Key={"connection_id": {"S": "expired-item"}}
        )

    assert wait_until(gone, timeout=10, interval=0.2)
    assert "Item" in client.get_item(TableName="chat_connections", Key={"connection_id": {"S": "live-item"}})


def test_function_logs_are_prefixed_with_its_name(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        request(ws, {"action": "echo"})
    assert wait_until(lambda: any(line == "[echo] echo handled echo" for line in list(test_stack.logs)))
    assert any(line.startswith("[echo] REPORT RequestId: ") for line in list(test_stack.logs))


def test_gateway_targets_any_rie_endpoint(
    test_stack: Stack, local_stack_factory: Any, tmp_path: Path
) -> None:
    # A second stack's `echo` route goes to the first's RIE endpoint, as to a container running the real RIE.
    other = local_stack_factory(
        terraform_dirs=TF_NO_DEFAULT,
        web_port=None,
        function_urls={"echo": test_stack.pools["echo"].invoke_url},
        dynamodb_endpoint=test_stack.dynamodb_endpoint,
        table_name="other_table",
    )
    assert "echo" not in other.pools
    with connect(other.ws_url) as ws:
        reply = json.loads(request(ws, {"action": "echo"}))
    assert reply["event"]["requestContext"]["apiId"] == other.gateway.api_id
    assert reply["pid"] in {w.process.pid for w in test_stack.pools["echo"].workers if w.process}
    tables = aws_client("dynamodb", test_stack.dynamodb_endpoint).list_tables()["TableNames"]
    assert "other_table" in tables


def test_code_changes_recycle_workers(local_stack_factory: Any, tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    shutil.copytree(FUNCTIONS, functions)
    stack = local_stack_factory(functions_dir=functions, reload=True, reload_interval_s=0.2, web_port=None)
    with connect(stack.ws_url) as ws:
        assert request(ws, {"action": "version"}) == "1"
        app = functions / "version" / "app.py"
        app.write_text(app.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
        deadline = time.monotonic() + 15
        seen = "1"
        while time.monotonic() < deadline and seen != "2":
            time.sleep(0.3)
            seen = request(ws, {"action": "version"})
    assert seen == "2"
    assert any("recycling" in line and "version" in line for line in stack.logs)


def test_burst_of_invocations_never_exceeds_max_workers() -> None:
    # Eight invocations dispatched in one tick: spawns scheduled but not yet started must count too.
    thread = StackThread(test_config(max_workers=2, min_workers=0))
    with thread as stack:
        pool = stack.pools["slow"]
        event = {"body": json.dumps({"seconds": 0.2})}

        async def burst() -> list[Any]:
            return list(await asyncio.gather(*(pool.invoke(event) for _ in range(8))))

        results = thread.run(burst())
        assert len(results) == 8 and all(r.error_type is None for r in results)
        assert pool.cold_starts == 2
        assert len(pool.workers) == 2


def _env_of(function: str, tmp_path: Path, **config: Any) -> dict[str, str]:
    model = load_model([REPO / "terraform"])
    return function_environment(
        StackConfig(**config),
        model,
        model.functions[function],
        callback_url="http://127.0.0.1:1/dev",
        dynamodb_endpoint="http://127.0.0.1:2",
        task_root=tmp_path,
    )


def test_environment_with_jwks_gives_connect_exactly_one_key_source(tmp_path: Path) -> None:
    # The functions refuse to start with two key sources: a configured JWKS replaces the local secret.
    env = _env_of("connect", tmp_path, jwt_jwks_url="http://127.0.0.1:9/jwks.json")
    assert env["JWT_JWKS_URL"] == "http://127.0.0.1:9/jwks.json"
    assert "JWT_SECRET" not in env and env["JWT_SECRET_ARN"] == ""


def test_with_a_jwks_the_algorithms_are_the_functions_default_not_terraforms_hs256(tmp_path: Path) -> None:
    env = _env_of("connect", tmp_path, jwt_jwks_url="http://127.0.0.1:9/jwks.json")
    assert env["JWT_ALGORITHMS"] == ""  # the function then takes RS256, its default with a JWKS
    env |= {"JWT_ISSUER": "https://issuer.example/", "JWT_AUDIENCE": "chat"}  # required with a JWKS
    assert AuthConfig.from_env(env).algorithms == ("RS256",)


def test_documented_settings_reach_the_functions_that_read_them(tmp_path: Path) -> None:
    settings = StackConfig.from_env(
        {
            "JWT_ALGORITHMS": "ES256",
            "JWT_AUDIENCE": "chat",
            "JWT_LEEWAY_SECONDS": "5",
            "RATE_LIMIT_BURST": "3",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            "UNRELATED": "x",
        }
    ).function_settings
    assert set(settings) == {
        "JWT_ALGORITHMS",
        "JWT_AUDIENCE",
        "JWT_LEEWAY_SECONDS",
        "RATE_LIMIT_BURST",
        "POWERTOOLS_LOG_LEVEL",
    }
    connect_env = _env_of(
        "connect", tmp_path, jwt_jwks_url="http://127.0.0.1:9/j", function_settings=settings
    )
    assert connect_env["JWT_ALGORITHMS"] == "ES256" and connect_env["JWT_AUDIENCE"] == "chat"
    assert connect_env["JWT_LEEWAY_SECONDS"] == "5"  # read by connect though Terraform does not set it
    assert connect_env["POWERTOOLS_LOG_LEVEL"] == "DEBUG" and "RATE_LIMIT_BURST" not in connect_env
    send_env = _env_of("send_message", tmp_path, function_settings=settings)
    assert send_env["RATE_LIMIT_BURST"] == "3" and "JWT_AUDIENCE" not in send_env


def test_two_functions_on_one_route_are_refused_at_start(tmp_path: Path) -> None:
    override = tmp_path / "tf"
    override.mkdir()
    source = (TF_FULL[1] / "functions.tf").read_text()
    # a second $connect function, as a copy-paste slip would add it
    (override / "functions.tf").write_text(
        source.replace(
            "    t_disconnect = {",
            '    t_connect_again = {\n      route_key = "$connect"\n      timeout = 5\n'
            "      memory_size = 128\n      route_response = false\n      environment = {}\n    }\n"
            "    t_disconnect = {",
            1,
        )
    )
    cause = start_failure(
        kit.test_config(terraform_dirs=(REPO / "terraform", override), functions_dir=FUNCTIONS)
    )
    assert isinstance(cause, TerraformError)
    assert "t_connect and t_connect_again have the same route_key '$connect'" in str(cause)


POWERTOOLS_LINE = json.dumps(
    {
        "level": "INFO",
        "location": "handler:56",
        "message": "message refused",
        "timestamp": "2026-12-01 10:15:06,562+0000",
        "service": "ws-chat",
        "cold_start": True,
        "function_name": "send_message",
        "function_request_id": "8297fef0",
        "connection_id": "BFaT_fALIAMCKug=",
        "code": "forbidden_room",
        "xray_trace_id": "1-6b0e9e2a",
    }
)
EMF_LINE = json.dumps(
    {
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "WsChat", "Metrics": []}]},
        "MessagesRefused": [1.0],
    }
)


@pytest.mark.parametrize(
    ("function", "line", "printed"),
    [
        (
            "send_message",
            POWERTOOLS_LINE,
            "10:15:06.562 INFO    [send_message] message refused "
            "connection_id=BFaT_fALIAMCKug= code=forbidden_room",
        ),
        ("send_message", EMF_LINE, None),
        ("echo", "START RequestId: 1 Version: $LATEST", None),
        ("echo", "plain text", "[echo] plain text"),
        ("echo", "{not json", "[echo] {not json"),
    ],
    ids=["powertools", "metrics-left-out", "start-left-out", "plain-text", "broken-json"],
)
def test_function_logs_print_as_one_readable_line(function: str, line: str, printed: str | None) -> None:
    assert readable_log_line(function, line) == printed


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_stack_prints_logs_in_the_chosen_format(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = kit.test_config(min_workers=0, echo_logs=True, log_format=log_format, ttl_reaper_interval_s=30.0)
    # a post to a room the sender is not in: send_message logs "message refused" and a metric
    event = generate_event("sendMessage", route_keys={}, config=config, connection_id="nobody")
    thread = StackThread(config)
    with thread as stack:
        result = thread.run(stack.pools["send_message"].invoke(event))
        assert result.ok, result.payload
        # the worker's stdout is read on its own: wait for the metric record the response preceded
        assert wait_until(lambda: any('"_aws"' in line for line in list(stack.logs)))
        raw = [line for line in list(stack.logs) if line.startswith("[send_message] ")]
    printed = [line for line in capsys.readouterr().out.splitlines() if "send_message" in line]
    assert any('"_aws"' in line for line in raw), "the function published no metric: nothing to check"
    if log_format == "json":
        assert all(line in printed for line in raw)
        return
    assert not any('"_aws"' in line or "START RequestId" in line for line in printed), printed
    records = [line for line in printed if " [send_message] " in line and not line.startswith("[")]
    assert records and all(not line.endswith("}") for line in records), printed
    assert any(line.startswith("[send_message] REPORT RequestId: ") for line in printed)
