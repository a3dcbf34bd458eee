"""Build every function image and invoke it through the Runtime Interface Emulator (pytest-docker).

These need a Docker engine; where none answers they skip, saying so. Nothing else in the suite skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.events import connect_event, disconnect_event, message_event

INVOKE_PATH = "/2015-03-31/functions/function/invocations"

pytestmark = pytest.mark.docker


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    version = ["docker", "version", "--format", "{{.Server.Version}}"]
    try:
        result = subprocess.run(version, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if result.returncode != 0 or not result.stdout.strip():
        reason = (result.stderr.strip().splitlines() or ["docker version failed"])[-1]
        return f"no Docker engine answers ({reason})"
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0:
        return "the Docker engine answers but the docker compose plugin is missing"
    return None


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(Path(__file__).parent / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return "ws-chat-image-tests"


@pytest.fixture(scope="session")
def functions(request: pytest.FixtureRequest) -> Any:
    problem = _engine_problem()
    if problem:
        pytest.skip(f"image build + RIE invocation tests need a Docker engine: {problem}")
    return request.getfixturevalue("docker_services")


def _invoke(services: Any, docker_ip: str, function: str, event: dict[str, Any]) -> Any:
    port = services.port_for(function, 8080)
    url = f"http://{docker_ip}:{port}{INVOKE_PATH}"

    def ready() -> bool:
        try:
            urllib.request.urlopen(url, data=b"{}", timeout=5).read()
        except OSError:
            return False
        return True

    services.wait_until_responsive(check=ready, timeout=60.0, pause=0.5)
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# What botocore raises when the (deliberately unreachable) AWS endpoint refuses: the handler ran and got as
# far as calling AWS, past import, init and event parsing.
UNREACHABLE_AWS = {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}


def _assert_handled(result: Any, statuses: set[int], *, may_raise_on_aws: bool = False) -> None:
    """The handler returned one of ``statuses`` or, where it calls AWS without catching, failed only
    because AWS is unreachable (never Runtime.ImportModuleError, a KeyError on the event, a timeout...)."""
    assert isinstance(result, dict), result
    if "statusCode" in result:
        assert result["statusCode"] in statuses, result
    else:
        assert may_raise_on_aws and result.get("errorType") in UNREACHABLE_AWS, result


def test_connect_image_refuses_a_missing_token(functions: Any, docker_ip: str) -> None:
    result = _invoke(functions, docker_ip, "connect", connect_event({"room_id": "general"}))
    assert result["statusCode"] == 401


def test_disconnect_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    # store.delete lets DynamoDB errors through: with no DynamoDB, an unreachable endpoint is the one failure.
    result = _invoke(functions, docker_ip, "disconnect", disconnect_event())
    _assert_handled(result, {200}, may_raise_on_aws=True)


def test_send_message_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    # Every failure past parsing is caught: 500 (and an error frame) when DynamoDB is unreachable.
    event = message_event({"action": "sendMessage", "room_id": "general", "message": "Hello"})
    _assert_handled(_invoke(functions, docker_ip, "send_message", event), {200, 500})


def test_default_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    event = message_event("not json", route="$default")
    # Refuses the frame with an error frame (whose delivery failure is logged, not raised) and returns 200.
    _assert_handled(_invoke(functions, docker_ip, "default", event), {200})


@pytest.mark.parametrize(
    ("result", "statuses", "may_raise", "ok"),
    [
        ({"statusCode": 200}, {200}, False, True),
        ({"statusCode": 500}, {200}, False, False),
        ({"errorType": "Runtime.ImportModuleError"}, {200}, True, False),
        ({"errorType": "KeyError"}, {200}, True, False),
        ({"errorType": "EndpointConnectionError"}, {200}, True, True),
        ({"errorType": "EndpointConnectionError"}, {200}, False, False),
        (None, {200}, True, False),
    ],
)
def test_assert_handled_accepts_only_a_status_or_unreachable_aws(
    result: Any, statuses: set[int], may_raise: bool, ok: bool
) -> None:
    # Runs without a Docker engine: the check the image tests rely on is not itself vacuous.
    try:
        _assert_handled(result, statuses, may_raise_on_aws=may_raise)
    except AssertionError:
        assert not ok
    else:
        assert ok


def test_get_history_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    event = message_event('{"action": "getHistory"}', route="getHistory")
    # Every failure past parsing is caught: 500 (and an error frame) when DynamoDB is unreachable.
    _assert_handled(_invoke(functions, docker_ip, "get_history", event), {200, 500})
