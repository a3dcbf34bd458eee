"""The web server's local endpoints, the CLI, and `make dev` as a developer runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import psutil
import pytest

from local_stack import DEFAULT_JWT_SECRET, Stack
from local_stack.testing import StackProcess, start_stack
from local_stack.testing.jwks import RsaKey, serve_jwks

from .helpers import FUNCTIONS, REPO, TF_FULL, connect, handshake_status

pytestmark = pytest.mark.timeout(120)
PY = sys.executable


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def only_connection(stack: Stack, timeout: float = 5) -> str:
    """The stack's one connection: the client sees 101 a moment before the gateway lists it."""
    deadline = time.monotonic() + timeout
    while not stack.connection_ids() and time.monotonic() < deadline:
        time.sleep(0.01)
    [conn_id] = stack.connection_ids()
    return conn_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_config_json(test_stack: Stack) -> None:
    status, headers, body = get(f"{test_stack.web_url}config.json")
    assert status == 200
    # no function of the test route table has MAX_MESSAGE_BYTES: the client keeps its own default
    assert json.loads(body) == {"wsUrl": test_stack.ws_url, "stage": "dev", "local": True}
    assert "no-store" in headers["Cache-Control"]


def test_config_json_carries_send_messages_max_message_bytes(local_stack_factory: Any) -> None:
    stack = local_stack_factory(
        terraform_dirs=(REPO / "terraform",),
        functions_dir=REPO / "lambdas",
        tf_vars={"max_message_bytes": "1234"},  # as `terraform -var max_message_bytes=1234` gives it
    )
    assert json.loads(get(f"{stack.web_url}config.json")[2])["maxMessageBytes"] == 1234


def test_dev_token_with_room(test_stack: Stack) -> None:
    status, _, body = get(f"{test_stack.web_url}dev/token?user=alice&name=Alice&room=general&ttl=120")
    assert status == 200
    doc = json.loads(body)
    claims = jwt.decode(doc["token"], DEFAULT_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["name"] == "Alice" and claims["rooms"] == ["general"]
    assert claims["exp"] - claims["iat"] == 120 and doc["expires_at"] == claims["exp"]
    assert doc["user_id"] == "alice"


def test_dev_token_without_room_allows_any_room(test_stack: Stack) -> None:
    _, _, body = get(f"{test_stack.web_url}dev/token?user=bob")
    claims = jwt.decode(json.loads(body)["token"], DEFAULT_JWT_SECRET, algorithms=["HS256"])
    assert "rooms" not in claims and claims["sub"] == "bob"


def test_dev_token_needs_a_user(test_stack: Stack) -> None:
    assert get(f"{test_stack.web_url}dev/token")[0] == 400
    assert get(f"{test_stack.web_url}dev/token?user=a&ttl=abc")[0] == 400


def test_static_files_served_without_caching(local_stack_factory: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>chat</title>")
    (site / "app.js").write_text("console.log('hi')")
    (tmp_path / "secret.txt").write_text("outside the web root")
    stack = local_stack_factory(web_dir=site)
    status, headers, body = get(stack.web_url or "")
    assert status == 200 and body.startswith(b"<!doctype html>") and "no-store" in headers["Cache-Control"]
    assert headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(f"{stack.web_url}app.js")[2] == b"console.log('hi')"
    for escape in ("../secret.txt", "%2e%2e/secret.txt", "..%2fsecret.txt", "%2e%2e%2fsecret.txt"):
        assert get(f"{stack.web_url}{escape}")[0] == 404, escape  # tmp_path/secret.txt exists: the guard
    assert get(f"{stack.web_url}missing.css")[0] == 404


def test_placeholder_until_web_client_exists(local_stack_factory: Any, tmp_path: Path) -> None:
    stack = local_stack_factory(web_dir=tmp_path / "nothing-here")
    status, _, body = get(stack.web_url or "")
    assert status == 200 and b"/config.json" in body


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 90, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "local_stack", *args],
        cwd=REPO,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_token() -> None:
    result = run_cli("token", "--user", "carol", "--room", "r1")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), DEFAULT_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol" and claims["rooms"] == ["r1"]


def run_invoke(tmp_path: Path, function: str, event: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m local_stack invoke FUNCTION --self-contained --event FILE`` over the test route table."""
    path = tmp_path / "event.json"
    path.write_text(event)
    args = ["invoke", function, "--self-contained", "--event", str(path)]
    args += ["--functions-dir", str(FUNCTIONS)]
    args += [arg for directory in TF_FULL for arg in ("--terraform-dir", str(directory))]
    return run_cli(*args, **env)


def test_cli_invoke_self_contained_like_sam_local_invoke(tmp_path: Path) -> None:
    # DYNAMODB_ENDPOINT points at nothing: a self-contained invoke uses a table of its own, never that one.
    done = run_invoke(
        tmp_path,
        "echo",
        json.dumps({"requestContext": {"routeKey": "cli"}}),
        DYNAMODB_ENDPOINT="http://127.0.0.1:9",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(json.loads(done.stdout)["body"])["event"] == {"requestContext": {"routeKey": "cli"}}
    assert "[echo] echo handled cli" in done.stderr
    assert "127.0.0.1:9" not in done.stderr


def test_cli_invoke_reports_function_error(tmp_path: Path) -> None:
    done = run_invoke(tmp_path, "boom", "{}")
    assert done.returncode == 1
    assert json.loads(done.stdout)["errorType"] == "ValueError"


def test_cli_invoke_refuses_a_bad_event_clearly(tmp_path: Path) -> None:
    done = run_invoke(tmp_path, "echo", "{not json")
    assert done.returncode == 2 and "is not JSON" in done.stderr and "Traceback" not in done.stderr


def test_cli_invoke_without_a_running_stack_says_how_to_start_one(tmp_path: Path) -> None:
    done = run_cli(
        "invoke", "send_message", "--ws-port", str(free_port()), LOCAL_STACK_STATE_DIR=str(tmp_path)
    )
    assert done.returncode == 2
    assert "no running `make dev`" in done.stderr and "--self-contained" in done.stderr


def test_cli_invoke_acts_on_the_running_stack(local_stack_factory: Any, tmp_path: Path) -> None:
    # The default target is the running stack: a message invoked for a live connection reaches it and
    # leaves its record in place.
    stack = local_stack_factory(
        terraform_dirs=(REPO / "terraform",), functions_dir=REPO / "lambdas", state_dir=tmp_path
    )
    state = json.loads((tmp_path / f"stack-{stack.ws_port}.json").read_text())
    assert state["ws_url"] == stack.ws_url and state["dynamodb_endpoint"] == stack.dynamodb_endpoint
    token = stack.token("alice", room="general")
    with connect(f"{stack.ws_url}?token={token}&room_id=general") as ws:
        conn_id = only_connection(stack)
        event = run_cli("generate-event", "sendMessage", "--connection-id", conn_id, "--message", "from cli")
        assert event.returncode == 0, event.stderr
        started = time.monotonic()
        done = run_cli(
            "invoke",
            "send_message",
            "-e",
            "-",
            "--ws-port",
            str(stack.ws_port),
            stdin=event.stdout,
            LOCAL_STACK_STATE_DIR=str(tmp_path),
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"statusCode": 200}
        frame = json.loads(ws.recv(timeout=10))
        assert frame["action"] == "message" and frame["message"] == "from cli" and frame["user_id"] == "alice"
        assert stack.connection_ids() == [conn_id]
    print(f"invoke against the running stack: {elapsed:.2f} s")


def test_the_state_file_goes_with_the_stack(tmp_path: Path) -> None:
    with start_stack(min_workers=0, state_dir=tmp_path) as stack:
        assert (tmp_path / f"stack-{stack.ws_port}.json").is_file()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("route", "route_key", "event_type"),
    [
        ("$connect", "$connect", "CONNECT"),
        ("connect", "$connect", "CONNECT"),
        ("sendMessage", "sendMessage", "MESSAGE"),
        ("$default", "$default", "MESSAGE"),
        ("disconnect", "$disconnect", "DISCONNECT"),
    ],
)
def test_generate_event_prints_each_routes_event(route: str, route_key: str, event_type: str) -> None:
    done = run_cli("generate-event", route)
    assert done.returncode == 0, done.stderr
    event = json.loads(done.stdout)
    ctx = event["requestContext"]
    assert ctx["routeKey"] == route_key and ctx["eventType"] == event_type and ctx["connectionId"]
    if event_type == "CONNECT":
        token = event["queryStringParameters"]["token"]
        assert jwt.decode(token, DEFAULT_JWT_SECRET, algorithms=["HS256"])["sub"] == "alice"
        assert event["queryStringParameters"]["room_id"] == "general"
    elif event_type == "MESSAGE":
        body = json.loads(event["body"])
        assert body["message"] == "Hello" and body.get("action") == (None if route == "$default" else route)
    else:
        assert ctx["disconnectStatusCode"] == 1000


def test_generate_event_refuses_an_unknown_route() -> None:
    done = run_cli("generate-event", "nope")
    assert done.returncode == 2 and "sendMessage" in done.stderr and "send_message" in done.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = run_cli("up", timeout=60, WS_PORT=str(port), WEB_PORT="0")
    assert done.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in done.stderr and "WS_PORT" in done.stderr
    assert "Traceback" not in done.stderr


# -o: never re-run the install step from inside the test (make test already ran it)
MAKE_DEV = ["make", "-s", "-o", ".venv/.installed-local", "dev"]


def make_dev(tmp_path: Path, **env: str) -> StackProcess:
    """`make dev` through the kit, stopped as Ctrl-C or a supervisor does it: SIGTERM to its process group."""
    return StackProcess(
        command=MAKE_DEV, env=env, log_path=tmp_path / "make-dev.log", signal_group=True, start_timeout_s=60
    )


def test_make_dev_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    ws_port, web_port = free_port(), free_port()
    stack = make_dev(tmp_path, WS_PORT=str(ws_port), WEB_PORT=str(web_port), STAGE="dev")
    with stack:
        ready = stack.ready
        assert ready["ws_url"] == f"ws://127.0.0.1:{ws_port}/dev"
        assert ready["callback_url"] == f"http://127.0.0.1:{ws_port}/dev"
        assert ready["web_url"] == f"http://127.0.0.1:{web_port}/" and Path(ready["state_file"]).is_file()
        lines = stack.output().splitlines()
        assert any(
            "Client URL" in line and ready["web_url"] in line for line in lines
        )  # the human lines stay
        token = next(line for line in lines if "Token (" in line).rsplit(" ", 1)[-1]
        assert jwt.decode(token, DEFAULT_JWT_SECRET, algorithms=["HS256"])["sub"] == "alice"
        status, _, body = get(f"http://127.0.0.1:{web_port}/config.json")
        assert status == 200 and json.loads(body)["wsUrl"] == f"ws://127.0.0.1:{ws_port}/dev"
        status, _, _ = get(f"http://127.0.0.1:{ws_port}/dev")
        assert status == 426
        with connect(f"ws://127.0.0.1:{ws_port}/dev?token={token}&room_id=general", open_timeout=30) as ws:
            ws.send(json.dumps({"action": "sendMessage", "message": "hi"}))
        descendants = psutil.Process(stack.pid).children(recursive=True)
        workers = [p for p in descendants if "awslambdaric" in " ".join(p.cmdline())]
        assert workers, "no awslambdaric worker was started"
    assert stack.returncode != -signal.SIGKILL, "it did not stop on SIGTERM within 30 s"
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"


def test_make_dev_passes_the_jwt_settings_through(tmp_path: Path) -> None:
    key = RsaKey()
    with serve_jwks(key) as (jwks_url, _):
        settings = dict(JWT_JWKS_URL=jwks_url, JWT_ISSUER="https://issuer.example/", JWT_AUDIENCE="chat")
        with make_dev(tmp_path, **settings) as stack:
            assert "JWT_JWKS_URL is set" in stack.output()
            good = key.token("alice", iss="https://issuer.example/", aud="chat")
            with connect(f"{stack.ws_url}?token={good}&room_id=general", open_timeout=30) as ws:
                ws.send(json.dumps({"action": "sendMessage", "message": "hi"}))
                assert json.loads(ws.recv(timeout=10))["user_id"] == "alice"
            wrong_issuer = key.token("alice", iss="https://elsewhere.example/", aud="chat")
            assert handshake_status(f"{stack.ws_url}?token={wrong_issuer}&room_id=general")[0] == 401


def test_the_documented_boto3_snippet_works_as_pasted(chat_stack: Stack, tmp_path: Path) -> None:
    # docs/aws-behaviour.md's @connections snippet, in a clean environment (no AWS_* variables or config
    # files), with only its port and connection id replaced by this stack's.
    doc = (REPO / "docs" / "aws-behaviour.md").read_text()
    [snippet] = [
        block
        for block in re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
        if "apigatewaymanagementapi" in block
    ]
    assert 'endpoint_url="http://127.0.0.1:3001/dev"' in snippet and 'connection_id = "' in snippet
    token = chat_stack.token("alice", room="general")
    with connect(f"{chat_stack.ws_url}?token={token}&room_id=general") as ws:
        conn_id = only_connection(chat_stack)
        code = snippet.replace("http://127.0.0.1:3001/dev", chat_stack.callback_url)
        code = re.sub(r'connection_id = "[^"]*"', f'connection_id = "{conn_id}"', code)
        script = tmp_path / "snippet.py"
        script.write_text(code)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            HOME=str(tmp_path),
            AWS_CONFIG_FILE=str(tmp_path / "none"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        )
        done = subprocess.run([PY, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(ws.recv(timeout=10)) == {"action": "message", "message": "hi"}
        assert done.stdout.strip() and "gone" not in done.stdout
