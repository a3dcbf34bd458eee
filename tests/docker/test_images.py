"""Build every function image and invoke it through the Runtime Interface Emulator (pytest-docker).

These need a Docker engine; where none answers they skip, saying so. Nothing else in the suite skips.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

pytestmark = pytest.mark.docker


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if result.returncode != 0 or not result.stdout.strip():
        return (
            "no Docker engine answers ("
            + (result.stderr.strip().splitlines() or ["docker version failed"])[-1]
            + ")"
        )
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if compose.returncode != 0:
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


def _event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def _assert_imported(result: Any) -> None:
    assert not (isinstance(result, dict) and str(result.get("errorType", "")).startswith("Runtime.")), result


def test_connect_image_refuses_a_missing_token(functions: Any, docker_ip: str) -> None:
    event = _event("connect")
    event["queryStringParameters"].pop("token", None)
    event.pop("multiValueQueryStringParameters", None)
    result = _invoke(functions, docker_ip, "connect", event)
    assert result["statusCode"] == 401


def test_disconnect_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    _assert_imported(_invoke(functions, docker_ip, "disconnect", _event("disconnect")))


def test_send_message_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    _assert_imported(_invoke(functions, docker_ip, "send_message", _event("message")))


def test_default_image_handles_a_captured_event(functions: Any, docker_ip: str) -> None:
    event = _event("message")
    event["requestContext"]["routeKey"] = "$default"
    event["body"] = "not json"
    _assert_imported(_invoke(functions, docker_ip, "default", event))
