"""Connect deadline (issue 16, item 4): a slow DynamoDB makes ``$connect`` refuse within its invocation's
deadline and leaves no record, even when the write landed and only its answer was late.

The real connect function talks to moto's server through a proxy on 127.0.0.1 that applies every request
at once and holds PutItem's answer ``delay`` seconds: before the deadline existed, 3 attempts x (2 s + 3 s)
outlasted the function and a record stayed for a connection API Gateway had already failed.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from local_stack.testing import FakeContext, MotoProcess, make_token
from local_stack.testing.jwks import RsaKey, serve_jwks
from tests.conftest import load_function
from tests.reliability import summary
from tests.support.events import connect_event
from tests.support.records import MEMBERSHIPS_TABLE, TABLE, table_ids
from tests.support.tables import create_connections_table, create_memberships_table

# What Lambda gives $connect (terraform/functions.tf: timeout 10) less a second of cold start and JWT work.
BUDGET_SECONDS = 9.0
_timings: list[float] = []  # elapsed time of each refused connect, for the summary line


@dataclass
class SlowProxy:
    """Forwards to ``upstream``; the answer of every PutItem waits ``delay`` seconds."""

    upstream: str
    delay: float = 0.0
    puts_applied: int = 0
    requests: list[str] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        proxy = self
        host, port = self.upstream.removeprefix("http://").split(":")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                proxy.requests.append(target)
                upstream = http.client.HTTPConnection(host, int(port), timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                upstream.close()
                if target == "PutItem":
                    proxy.puts_applied += 1
                    proxy._release.wait(proxy.delay)  # applied; the answer is late
                try:
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up first
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SlowProxy:
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    with MotoProcess() as moto:
        yield moto.endpoint


@pytest.fixture
def table(moto_server: str, function_env: dict[str, str]) -> Iterator[Any]:
    client = boto3.client("dynamodb", endpoint_url=moto_server)
    create_connections_table(client, TABLE)
    create_memberships_table(client, MEMBERSHIPS_TABLE)  # connect writes the first room's membership
    yield client
    client.delete_table(TableName=TABLE)
    client.delete_table(TableName=MEMBERSHIPS_TABLE)


def connect_within_budget(module: Any, event: dict[str, Any]) -> tuple[Any, float, BaseException | None]:
    """(response, seconds it took, the error Lambda would report: API Gateway then answers 502)."""
    started = time.monotonic()
    try:
        response, error = module.handler(event, FakeContext(seconds=BUDGET_SECONDS)), None
    except Exception as raised:
        response, error = None, raised
    return response, time.monotonic() - started, error


def connect_through(proxy: SlowProxy, monkeypatch: pytest.MonkeyPatch, connection_id: str) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    event = connect_event({"token": make_token("alice"), "room_id": "general"}, connection_id=connection_id)
    return connect_within_budget(load_function("connect"), event)


def tally(elapsed: float, refused: bool, left: set[str]) -> None:
    summary.record("connect_deadline", tried=1, refused=int(refused), stored=len(left))
    _timings.append(elapsed)
    summary.note("connect_deadline", slowest=f"{max(_timings):.1f} s of {BUDGET_SECONDS:.0f} s")


@pytest.mark.parametrize("delay", [30.0, 4.0, 2.5])
def test_connect_deadline_slow_write_is_refused_in_time_and_undone(
    table: Any, monkeypatch: pytest.MonkeyPatch, delay: float
) -> None:
    with SlowProxy(table.meta.endpoint_url, delay=delay) as proxy:
        response, elapsed, error = connect_through(proxy, monkeypatch, "SLOWWRITE000000=")
        left = table_ids(table)
    tally(elapsed, error is not None and elapsed < BUDGET_SECONDS, left)
    assert proxy.puts_applied >= 1, "the write never reached the table: nothing to undo was tested"
    assert response is None and error is not None, f"connected although every answer took {delay} s"
    assert elapsed < BUDGET_SECONDS - 0.5, f"answered after {elapsed:.1f} s, past the deadline"
    assert left == set(), "a refused connection left its record"
    assert "DeleteItem" in proxy.requests


def test_connect_deadline_control_slightly_slow_write_connects(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without this, a connect that refused everything under a proxy would pass the test above.
    with SlowProxy(table.meta.endpoint_url, delay=0.3) as proxy:
        response, elapsed, error = connect_through(proxy, monkeypatch, "SLOWBUTFINE0000=")
    assert error is None and response is not None and response["statusCode"] == 200
    assert table_ids(table) == {"SLOWBUTFINE0000="}
    assert elapsed < 2


def test_connect_deadline_slow_jwks_is_401_in_time_whatever_its_timeout(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 20 s JWKS timeout (the largest JWT_JWKS_TIMEOUT_SECONDS allows) in a 10 s function: the fetch is
    # cut to what the deadline leaves after reserving the write and its undo.
    key = RsaKey()
    with serve_jwks(key, delay=30.0) as (url, seen):
        monkeypatch.delenv("JWT_SECRET", raising=False)
        monkeypatch.setenv("JWT_JWKS_URL", url)
        monkeypatch.setenv("JWT_JWKS_TIMEOUT_SECONDS", "20")
        monkeypatch.setenv("JWT_ISSUER", "https://issuer.test/")
        monkeypatch.setenv("JWT_AUDIENCE", "chat-api")
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", table.meta.endpoint_url)
        token = key.token("alice", iss="https://issuer.test/", aud="chat-api")
        event = connect_event({"token": token, "room_id": "general"}, connection_id="SLOWJWKS0000000=")
        response, elapsed, error = connect_within_budget(load_function("connect"), event)
    left = table_ids(table)
    tally(elapsed, response is not None and response["statusCode"] == 401, left)
    assert error is None and response["statusCode"] == 401
    assert len(seen) == 1
    assert elapsed < BUDGET_SECONDS - 0.5 - 2 * 3 + 0.5, f"the JWKS fetch took {elapsed:.1f} s"
    assert left == set()
