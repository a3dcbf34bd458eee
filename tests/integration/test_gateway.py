"""The gateway behaves like API Gateway: handshake, events, route selection, frames, limits, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import urllib3
from aiohttp import web
from websockets.exceptions import ConnectionClosed

from local_stack import Stack
from local_stack.gateway import Gateway, GatewayLimits, Route
from local_stack.runtime import InvokeResult
from local_stack.testing.raw_ws import RawClient, handshake_request

from ..support.events import EVENTS
from .helpers import TF_NO_DEFAULT, EventLog, connect, connection_id, handshake_status, request, wait_until

pytestmark = pytest.mark.timeout(60)

# real captures (tests/events, Powertools' apiGatewayWebSocketApi*.json); the connect one has a query string
CAPTURED = {
    name: json.loads((EVENTS / f"{name}.json").read_text()) for name in ("connect", "message", "disconnect")
}
QUERY_KEYS = {"queryStringParameters", "multiValueQueryStringParameters"}
ID = re.compile(r"^[A-Za-z0-9]{15}=$")
CLF = re.compile(r"^\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")
FRAME = re.compile(
    r'^\{"message": "(?P<msg>[^"]+)", "connectionId":"(?P<cid>[A-Za-z0-9]{15}=)", '
    r'"requestId":"(?P<rid>[A-Za-z0-9]{15}=)"\}$'
)


@pytest.fixture(scope="module")
def no_default_stack(local_stack_factory_module: Any) -> Stack:
    return local_stack_factory_module(terraform_dirs=TF_NO_DEFAULT)


@pytest.fixture(scope="module")
def short_stack(
    local_stack_factory_module: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Stack, EventLog]:
    directory = tmp_path_factory.mktemp("short-events")
    stack = local_stack_factory_module(event_log_dir=directory, idle_timeout_s=1.5, max_duration_s=4.0)
    return stack, EventLog(directory)


# -- handshake -----------------------------------------------------------------------------------------
def test_connect_2xx_upgrades_to_101(test_stack: Stack) -> None:
    with connect(test_stack.ws_url + "?room_id=general") as ws:
        assert ws.response.status_code == 101
        assert ID.match(connection_id(ws))


@pytest.mark.parametrize(
    ("query", "status"),
    [*((f"status={n}", n) for n in (400, 401, 403, 429)), ("raise=1", 502), ("bad=1", 502)],
    ids=["400", "401", "403", "429", "exception-502", "malformed-response-502"],
)
def test_connect_non_2xx_or_failure_gives_that_status(test_stack: Stack, query: str, status: int) -> None:
    code, body = handshake_status(f"{test_stack.ws_url}?{query}")
    assert code == status
    if status != 502:
        assert json.loads(body) == {"message": f"status {status} on purpose"}


def test_connect_timeout_gives_502(test_stack: Stack) -> None:
    started = time.monotonic()
    code, _ = handshake_status(f"{test_stack.ws_url}?sleep=8")  # t_connect's Terraform timeout is 5 s
    assert code == 502
    assert 4.5 < time.monotonic() - started < 8


def test_connect_handshake_waits_for_connect(test_stack: Stack) -> None:
    started = time.monotonic()
    with connect(f"{test_stack.ws_url}?sleep=1"):
        assert time.monotonic() - started >= 1.0


def test_connect_subprotocol_is_echoed(test_stack: Stack) -> None:
    with connect(f"{test_stack.ws_url}?protocol=chat.v1", subprotocols=["chat.v1", "other"]) as ws:
        assert ws.subprotocol == "chat.v1"


def test_no_connect_route_accepts(no_default_stack: Stack) -> None:
    with connect(no_default_stack.ws_url) as ws:
        assert ws.response.status_code == 101


def test_plain_http_gets_426(test_stack: Stack) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(test_stack.callback_url, timeout=10)
    assert info.value.code == 426


def test_other_path_is_forbidden(test_stack: Stack) -> None:
    assert handshake_status(f"ws://127.0.0.1:{test_stack.ws_port}/otherstage")[0] == 403


# -- events ----------------------------------------------------------------------------------------------
def test_connect_event_keys_equal_captured(test_stack: Stack, event_log: EventLog) -> None:
    with connect(f"{test_stack.ws_url}?token=t&room_id=general") as ws:
        cid = connection_id(ws)
    event = event_log.wait_for(cid, "$connect")
    real = CAPTURED["connect"]
    assert set(event) == set(real)
    assert set(event["requestContext"]) == set(real["requestContext"])
    # the capture's identity has sourceIp only; userAgent is added when the client sends one (websockets does)
    assert set(event["requestContext"]["identity"]) == set(real["requestContext"]["identity"]) | {"userAgent"}
    forwarded = {"X-Amzn-Trace-Id", "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto", "Host"}
    assert forwarded | {"Sec-WebSocket-Key", "Sec-WebSocket-Version"} <= set(event["headers"])
    assert "Connection" not in event["headers"] and "Upgrade" not in event["headers"]
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    assert event["queryStringParameters"] == {"token": "t", "room_id": "general"}
    assert event["multiValueQueryStringParameters"] == {"token": ["t"], "room_id": ["general"]}
    assert event["isBase64Encoded"] is False


def test_connect_event_without_query_has_no_query_keys(test_stack: Stack, event_log: EventLog) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
    event = event_log.wait_for(cid, "$connect")
    assert set(event) == set(CAPTURED["connect"]) - QUERY_KEYS  # API Gateway omits both without a query


def test_message_event_keys_equal_captured(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        event = json.loads(request(ws, {"action": "echo", "x": 1}))["event"]
    real = CAPTURED["message"]
    assert set(event) == set(real)
    assert set(event["requestContext"]) == set(real["requestContext"])
    assert event["body"] == json.dumps({"action": "echo", "x": 1})
    ctx = event["requestContext"]
    assert ctx["eventType"] == "MESSAGE" and ctx["routeKey"] == "echo" and ctx["messageDirection"] == "IN"
    assert ID.match(ctx["messageId"]) and ctx["messageId"] != ctx["requestId"]


def close_without_status(ws: Any) -> None:
    with ws.protocol_mutex:  # a close frame without a status code (browsers send these)
        ws.protocol.send_close()
        ws.send_data()
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)


@pytest.mark.parametrize(
    ("close", "code", "reason"),
    [
        (lambda ws: ws.close(code=1000, reason="bye"), 1000, "bye"),
        (lambda ws: ws.close(code=1001), 1001, "Going away"),
        (close_without_status, 1005, "Client-side close frame status not set"),
    ],
    ids=["1000-with-reason", "1001", "no-status-1005"],
)
def test_client_close_fires_disconnect_with_captured_keys(
    test_stack: Stack, event_log: EventLog, close: Any, code: int, reason: str
) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
        close(ws)
    event = event_log.wait_for(cid, "$disconnect")
    real = CAPTURED["disconnect"]
    assert set(event) == set(real)
    assert set(event["requestContext"]) == set(real["requestContext"])
    assert set(event["headers"]) == set(real["headers"])
    assert event["requestContext"]["disconnectStatusCode"] == code
    assert event["requestContext"]["disconnectReason"] == reason


def test_event_ids_and_times_have_aws_shapes(test_stack: Stack, event_log: EventLog) -> None:
    before = int(time.time() * 1000)
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
        message = json.loads(request(ws, {"action": "echo"}))["event"]["requestContext"]
    connect_ctx = event_log.wait_for(cid, "$connect")["requestContext"]
    for ctx in (connect_ctx, message):
        assert ID.match(ctx["connectionId"]) and ctx["connectionId"] == cid
        assert ID.match(ctx["requestId"]) and ctx["requestId"] == ctx["extendedRequestId"]
        assert CLF.match(ctx["requestTime"])
        assert before - 1000 <= ctx["connectedAt"] <= ctx["requestTimeEpoch"] <= before + 60_000
        assert ctx["stage"] == test_stack.config.stage
        assert ctx["identity"]["sourceIp"] == "127.0.0.1"
        assert re.fullmatch(r"[a-z0-9]{10}", ctx["apiId"])
    assert connect_ctx["connectedAt"] == message["connectedAt"]
    assert connect_ctx["requestId"] != message["requestId"]


# -- route selection and frames ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("hello, not json", id="not-json"),
        pytest.param({"action": "noSuchRoute"}, id="unmatched-action"),
        pytest.param({"no_action": 1}, id="no-action"),
        pytest.param("[1, 2]", id="json-not-object"),
        pytest.param({"action": "$connect"}, id="reserved-connect"),
        pytest.param({"action": "$disconnect"}, id="reserved-disconnect"),
    ],
)
def test_frames_no_route_takes_go_to_default(test_stack: Stack, frame: dict[str, Any] | str) -> None:
    with connect(test_stack.ws_url) as ws:
        reply = json.loads(request(ws, frame))
    assert reply == {"route": "$default", "body": frame if isinstance(frame, str) else json.dumps(frame)}


def test_forbidden_frame_without_default_route(no_default_stack: Stack) -> None:
    with connect(no_default_stack.ws_url) as ws:
        cid = connection_id(ws)
        frame = request(ws, {"action": "nothing-takes-this"})
        match = FRAME.match(frame)
        assert match, frame
        assert match["msg"] == "Forbidden" and match["cid"] == cid
        assert request(ws, "not json").startswith('{"message": "Forbidden", "connectionId":"')
        assert json.loads(request(ws, {"action": "echo"}))["event"]["requestContext"]["connectionId"] == cid


def test_internal_server_error_frame_when_integration_throws(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
        match = FRAME.match(request(ws, {"action": "boom"}))
        assert match and match["msg"] == "Internal server error" and match["cid"] == cid
        assert json.loads(request(ws, {"action": "echo"}))["function"] == "echo"  # still open


def test_body_reaches_client_only_with_route_response(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        ws.send(json.dumps({"action": "noreply"}))
        time.sleep(0.5)
        first = json.loads(request(ws, {"action": "echo"}))
        assert first["function"] == "echo"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


# -- limits ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([json.dumps({"action": "echo", "pad": "x" * (33 * 1024)})], 1009),
        (["z" * (30 * 1024)] * 5, 1009),  # 150 KB in frames of 30 KB
        ([b"\x00\x01binary"], 1003),
    ],
    ids=["frame-over-32kb-1009", "message-over-128kb-1009", "binary-frame-1003"],
)
def test_refused_frame_closes_with_its_code_and_fires_disconnect(
    test_stack: Stack, event_log: EventLog, frames: list[str | bytes], code: int
) -> None:
    with connect(test_stack.ws_url, max_size=None) as ws:
        cid = connection_id(ws)
        ws.send(frames[0] if len(frames) == 1 else iter(frames))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == code
    assert event_log.wait_for(cid, "$disconnect")["requestContext"]["disconnectStatusCode"] == code


@pytest.mark.parametrize(
    "frames",
    [["x" * (32 * 1024)], ["y" * (30 * 1024)] * 3],
    ids=["frame-of-32kb", "three-30kb-frames-90kb-message"],
)
def test_frames_and_messages_within_the_limits_are_accepted(test_stack: Stack, frames: list[str]) -> None:
    with connect(test_stack.ws_url, max_size=None) as ws:
        ws.send(frames[0] if len(frames) == 1 else iter(frames))
        assert json.loads(ws.recv(timeout=15))["body"] == "".join(frames)


def test_idle_timeout_closes_and_fires_disconnect(short_stack: tuple[Stack, EventLog]) -> None:
    stack, log = short_stack
    with connect(stack.ws_url) as ws:
        # Before the frame that asks for the id: that frame restarts the idle timer, and its answer can
        # come back late on a loaded machine.
        started = time.monotonic()
        cid = connection_id(ws)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert 1.0 < time.monotonic() - started < 4
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    event = log.wait_for(cid, "$disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1001
    assert event["requestContext"]["disconnectReason"] == "Going away"


def test_activity_postpones_idle_timeout(short_stack: tuple[Stack, EventLog]) -> None:
    stack, _ = short_stack
    with connect(stack.ws_url) as ws:
        # 3 x 0.8 s of chatting: the last request goes out 2.4 s in, past the 1.5 s idle timeout; it is
        # answered (request() raises ConnectionClosed otherwise) only if each frame postponed the timeout
        for _ in range(3):
            time.sleep(0.8)
            assert json.loads(request(ws, {"action": "echo"}))["function"] == "echo"


def test_maximum_duration_closes_an_active_connection(short_stack: tuple[Stack, EventLog]) -> None:
    stack, log = short_stack
    with connect(stack.ws_url) as ws:
        cid = connection_id(ws)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(20):
                request(ws, {"action": "echo"})
                time.sleep(0.5)
    assert 3.0 < time.monotonic() - started < 6.5
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert log.wait_for(cid, "$disconnect")["requestContext"]["disconnectStatusCode"] == 1001


# -- concurrency ------------------------------------------------------------------------------------------
def test_concurrent_invocations_overlap(test_stack: Stack) -> None:
    results: list[dict[str, Any]] = []

    def one() -> None:
        with connect(test_stack.ws_url) as ws:
            results.append(json.loads(request(ws, {"action": "slow", "seconds": 1.5}, timeout=20)))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2
    a, b = results
    assert a["pid"] != b["pid"]
    assert max(a["start"], b["start"]) < min(a["end"], b["end"])  # the two runs overlapped in time


def test_messages_of_one_connection_run_concurrently(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        ws.send(json.dumps({"action": "slow", "seconds": 1.5}))
        ws.send(json.dumps({"action": "slow", "seconds": 1.5}))
        a, b = (json.loads(ws.recv(timeout=20)) for _ in range(2))
    assert max(a["start"], b["start"]) < min(a["end"], b["end"])


def test_function_timeout_gives_internal_server_error_and_recovers(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        started = time.monotonic()
        match = FRAME.match(request(ws, {"action": "slow", "seconds": 10}, timeout=20))  # timeout is 3 s
        assert match and match["msg"] == "Internal server error"
        assert 2.5 < time.monotonic() - started < 8
        assert "start" in json.loads(request(ws, {"action": "slow", "seconds": 0.1}))
    assert any("Task timed out after 3.00 seconds" in line for line in test_stack.function_logs("slow"))


# -- hostile and broken clients (raw sockets) ----------------------------------------------------------------
def raw_client(stack: Stack) -> tuple[RawClient, str]:
    """A bare-socket client and its connection id."""
    client = RawClient.open(stack.ws_url)
    client.send_text(json.dumps({"action": "echo"}))
    _, payload = client.recv_frame() or (0, b"")
    return client, json.loads(payload)["event"]["requestContext"]["connectionId"]


def test_unmasked_client_frame_closes_1002(test_stack: Stack, event_log: EventLog) -> None:
    client, cid = raw_client(test_stack)
    try:
        client.send_text(json.dumps({"action": "echo"}), masked=False)  # RFC 6455 5.1: must be masked
        replies, code = client.frames_until_closed(timeout=10)
    finally:
        client.close()
    assert (replies, code) == ([], 1002)  # closed, and the unmasked frame was never invoked
    assert event_log.wait_for(cid, "$disconnect")["requestContext"]["disconnectStatusCode"] == 1002


def test_tcp_drop_without_close_frame_fires_disconnect_1006(test_stack: Stack, event_log: EventLog) -> None:
    client, cid = raw_client(test_stack)
    client.drop()
    assert event_log.wait_for(cid, "$disconnect")["requestContext"]["disconnectStatusCode"] == 1006


# -- fairness and memory: a Gateway of its own with recording integrations -----------------------------------
class Recorder:
    """An integration that records each event and, for messages, waits until released."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.release = threading.Event()

    def bodies(self) -> list[str]:
        return [e["body"] for e in list(self.events) if e["requestContext"]["eventType"] == "MESSAGE"]

    async def invoke(self, payload: bytes) -> InvokeResult:
        event = json.loads(payload)
        self.events.append(event)
        if event["requestContext"]["eventType"] == "MESSAGE":
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return InvokeResult(json.dumps({"statusCode": 200, "body": event.get("body")}).encode())


class GatewayThread:
    """A bare :class:`Gateway` served on a free port from an event loop in a thread."""

    def __init__(self, routes: dict[str, Route], **limits: Any) -> None:
        self.lines: list[str] = []
        self.gateway = Gateway(
            stage="dev",
            routes=routes,
            route_selection_expression="$request.body.action",
            limits=GatewayLimits(**limits),
            log=self.lines.append,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def start(self) -> int:
        self.runner = web.AppRunner(
            self.gateway.app, access_log=None, handle_signals=False, shutdown_timeout=1
        )
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        await self.gateway.close(2.0)
        await self.runner.cleanup()

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        self.port = self.run(self.start())
        self.url = f"ws://127.0.0.1:{self.port}/dev"
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_inbound_queue_is_ordered_bounded_and_drops_the_rest() -> None:
    recorder = Recorder()
    routes = {"$default": Route("$default", "recorder", recorder, route_response=True)}
    with (
        GatewayThread(routes, inbound_queue_frames=3, inbound_concurrency=2) as server,
        connect(server.url) as ws,
    ):
        for i in range(10):  # a burst: 2 invoked at once, 3 wait in order, 5 are dropped
            ws.send(f"f{i}")
        assert wait_until(lambda: len(recorder.bodies()) == 2, timeout=5)
        time.sleep(0.3)  # every frame of the burst has reached the gateway
        assert recorder.bodies() == ["f0", "f1"]
        recorder.release.set()
        replies = []
        with contextlib.suppress(TimeoutError):
            while True:
                replies.append(ws.recv(timeout=1.5))
    assert recorder.bodies() == ["f0", "f1", "f2", "f3", "f4"]  # started in arrival order
    assert sorted(replies) == ["f0", "f1", "f2", "f3", "f4"]
    assert any("5 frame(s) dropped" in line for line in server.lines)


def test_half_sent_handshakes_are_closed_after_the_handshake_timeout() -> None:
    with GatewayThread({}, handshake_timeout_s=1.0) as server, connect(server.url) as ws:
        half = []
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(handshake_request(server.url)[:40])  # the request line and part of a header
            half.append(sock)
        time.sleep(2.5)
        closed = 0
        for sock in half:
            sock.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                closed += sock.recv(1) == b""
            sock.close()
        assert closed == 1000
        # an upgraded connection is not a handshake: it stays open (no routes: the Forbidden frame)
        assert json.loads(request(ws, "hello"))["message"] == "Forbidden"


def test_slow_reader_gets_its_posts_answered_at_once_then_is_closed_1008() -> None:
    recorder = Recorder()
    routes = {"$disconnect": Route("$disconnect", "recorder", recorder)}
    with GatewayThread(routes, outbound_queue_bytes=256 * 1024) as server:
        reader = RawClient.open(server.url, rcvbuf=4096)  # and never reads
        assert wait_until(lambda: server.gateway.connections, timeout=5)
        [cid] = list(server.gateway.connections)
        http = urllib3.PoolManager(maxsize=1)
        frame_64kb = b"x" * (64 * 1024)
        statuses, slowest = [], 0.0
        for _ in range(200):  # 12.5 MB: more than any socket buffer takes
            started = time.monotonic()
            response = http.request(
                "POST", f"http://127.0.0.1:{server.port}/dev/@connections/{cid}", body=frame_64kb, timeout=3.0
            )
            slowest = max(slowest, time.monotonic() - started)
            statuses.append(response.status)
            if response.status != 200:
                assert response.headers["x-amzn-ErrorType"] == "GoneException"
                break
        assert wait_until(lambda: recorder.events, timeout=10)
        reader.close()
    assert slowest < 1.0  # answered once queued: the sender never waits for this reader
    assert statuses[-1] == 410 and statuses.count(200) == len(statuses) - 1
    context = recorder.events[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["connectionId"]) == (1008, cid)


def test_gateway_logs_one_line_per_handshake_frame_and_disconnect(
    test_stack: Stack, event_log: EventLog
) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
    event_log.wait_for(cid, "$disconnect")

    def lines() -> list[str]:
        return [line for line in test_stack.function_logs("gateway") if cid in line]

    assert wait_until(lambda: len(lines()) == 3, timeout=10), lines()
    connect_line, frame_line, disconnect_line = lines()
    ms = r"\d+ ms"
    assert re.fullmatch(rf"\$connect {re.escape(cid)} -> t_connect: 101 {ms}", connect_line)
    assert re.fullmatch(rf"echo {re.escape(cid)} -> echo: 200 {ms}", frame_line)
    assert re.fullmatch(
        rf"\$disconnect {re.escape(cid)} -> t_disconnect: 200 {ms} \(close 1000\)", disconnect_line
    )
