"""Faults of the management API (errors, timeouts) and of DynamoDB (throttling, 5xx), through fakes: every
reachable recipient gets the message, only a 410 deletes a connection, a failed ``$connect`` write stores
nothing, and every failure shows in the EMF metrics and the logs."""

from __future__ import annotations

import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import botocore.endpoint
import pytest

from local_stack.testing import FakeContext, FakeManagementApi, make_token
from shared.management_api import ManagementApiClient
from shared.sender import Sender
from tests.conftest import load_function
from tests.reliability import summary
from tests.reliability.conftest import Captured
from tests.reliability.helpers import DynamoFaults, closed_port_url
from tests.support.events import connect_event, disconnect_event, message_event
from tests.support.records import put_record, record_ids

SENDER = "SENDERxxxxxxxx0="
LIVE = ["LIVE0xxxxxxxxx0=", "LIVE1xxxxxxxxx0=", "LIVE2xxxxxxxxx0="]
GONE = "GONExxxxxxxxxx0="
# Transient faults: reachable after botocore-free retries (RetryPolicy: 3 attempts).
TRANSIENT = {"T429xxxxxxxxxx0=": [429], "T500x2xxxxxxxx0=": [500, 500], "T503xxxxxxxxxx0=": [503]}
TRANSIENT_NET = {"THANGxxxxxxxxx0=": ["hang"], "TRESETxxxxxxxx0=": ["reset"]}
# Permanent faults on live connections: unreachable now, and never deleted for it.
PERMANENT = {
    "P403xxxxxxxxxx0=": [403],
    "P413xxxxxxxxxx0=": [413],
    "P429xxxxxxxxxx0=": [429, 429, 429],
    "P500xxxxxxxxxx0=": [500, 500, 500],
}
PERMANENT_NET = {"PHANGxxxxxxxxx0=": ["hang", "hang", "hang"]}
READ_TIMEOUT = 0.5  # production: 5 s (shared.sender.management_client); shortened to keep the test short
# botocore's standard retry mode gives DynamoDB 4 attempts, with full-jitter backoff of up to 1, 2, 4 s.
DYNAMODB_ATTEMPTS = 4
DYNAMODB_MAX_BACKOFF = 1 + 2 + 4


@pytest.fixture(autouse=True)
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry sleeps, recorded instead of slept (counted, not timed)."""
    slept: list[float] = []
    clock = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
    clock.sleep = slept.append
    monkeypatch.setattr(botocore.endpoint, "time", clock)
    return slept


@pytest.fixture
def management_api() -> Iterator[FakeManagementApi]:
    with FakeManagementApi(hang_seconds=4 * READ_TIMEOUT) as fake:
        yield fake


@pytest.fixture
def send(connected: Callable[..., None]) -> Any:
    connected(SENDER, "general", "alice")
    return load_function("send_message")


class CountingClient(ManagementApiClient):
    """The production client, counting the posts the sender makes per connection id. The fake's own count
    misses an attempt that died on a pooled connection the fake had closed (after a hang)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: Counter[str] = Counter()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        self.attempts[ConnectionId] += 1
        super().post_to_connection(ConnectionId=ConnectionId, Data=Data)


def short_timeout_sender(module: Any) -> Sender:
    """The production client (shared.management_api), with its timeouts shortened."""

    def client(url: str) -> ManagementApiClient:
        return CountingClient(url, pool_size=8, connect_timeout=READ_TIMEOUT, read_timeout=READ_TIMEOUT)

    return Sender(pool_size=8, on_gone=module.store.delete_if_exists, client_factory=client)


def post(module: Any, text: str = "hello") -> dict[str, Any]:
    event = message_event({"action": "sendMessage", "message": text}, connection_id=SENDER)
    return module.handler(event, FakeContext())


def delivered_texts(api: FakeManagementApi, cid: str) -> list[str]:
    return [f["message"] for f in api.frames_to(cid) if f["action"] == "message"]


def tally(**counts: int) -> None:
    summary.record("faults", scenarios=1, **counts)


def test_faults_management_api_errors_and_timeouts(
    send: Any,
    dynamodb: Any,
    connected: Callable[..., None],
    management_api: FakeManagementApi,
    captured: Captured,
) -> None:
    send.sender = send.service.sender = short_timeout_sender(send)
    everyone = [*LIVE, GONE, *TRANSIENT, *TRANSIENT_NET, *PERMANENT, *PERMANENT_NET]
    for cid in everyone:
        connected(cid, "general")
    management_api.live.discard(GONE)
    for cid, script in {**TRANSIENT, **PERMANENT, **TRANSIENT_NET, **PERMANENT_NET}.items():
        management_api.scripts[cid] = list(script)

    assert post(send) == {"statusCode": 200}

    reachable = [SENDER, *LIVE, *TRANSIENT, *TRANSIENT_NET]
    unreachable = [*PERMANENT, *PERMANENT_NET]
    got = {cid: delivered_texts(management_api, cid) for cid in [SENDER, *everyone]}
    left = record_ids(dynamodb)
    metrics = captured.metrics()
    [broadcast] = [line for line in captured.logs() if line.get("message") == "broadcast"]
    warned = {line.get("connection_id") for line in captured.logs() if line["level"] == "WARNING"}
    uncounted = int(metrics["DeliveryFailures"] != len(unreachable)) + len(set(unreachable) - warned)
    tally(
        reachable=len(reachable),
        reachable_delivered=sum(got[cid] == ["hello"] for cid in reachable),
        live_deleted=len([cid for cid in [SENDER, *everyone] if cid != GONE and cid not in left]),
        uncounted=uncounted,
    )

    assert {cid: got[cid] for cid in reachable} == {cid: ["hello"] for cid in reachable}
    assert all(got[cid] == [] for cid in [GONE, *unreachable])
    assert left == {SENDER, *everyone} - {GONE}  # only the 410 was deleted
    # 403 and 413 are not retried; 429, 5xx and timeouts are, up to 3 attempts (counted where the sender
    # makes them: an attempt can die on a pooled connection before the fake sees it).
    attempts = send.sender.client(management_api.endpoint_url).attempts
    assert all(management_api.attempts[cid] >= 1 for cid in unreachable)
    assert {cid: attempts[cid] for cid in unreachable} == {
        "P403xxxxxxxxxx0=": 1,
        "P413xxxxxxxxxx0=": 1,
        "P429xxxxxxxxxx0=": 3,
        "P500xxxxxxxxxx0=": 3,
        "PHANGxxxxxxxxx0=": 3,
    }
    assert metrics["RecipientsDelivered"] == len(reachable)
    assert metrics["GoneConnectionsRemoved"] == 1
    assert metrics["DeliveryFailures"] == len(unreachable)
    assert (broadcast["delivered"], broadcast["gone"], broadcast["failed"]) == (len(reachable), 1, 5)
    assert set(unreachable) <= warned  # each failed recipient is named in a warning


def test_faults_management_api_down_deletes_nothing(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, captured: Captured
) -> None:
    monkeypatch.setenv("WEBSOCKET_CALLBACK_URL", closed_port_url().rsplit("/", 2)[0] + "/prod")
    for cid in [SENDER, *LIVE]:
        put_record(dynamodb, cid, "general", "alice")
    module = load_function("send_message")
    module.sender = module.service.sender = short_timeout_sender(module)
    assert post(module) == {"statusCode": 200}
    left = record_ids(dynamodb)
    metrics = captured.metrics()
    tally(live_deleted=4 - len(left), uncounted=int(metrics["DeliveryFailures"] != 4))
    assert left == {SENDER, *LIVE}
    assert metrics["DeliveryFailures"] == 4 and metrics["RecipientsDelivered"] == 0


@pytest.fixture
def members(send: Any, connected: Callable[..., None]) -> list[str]:
    for cid in LIVE:
        connected(cid, "general")
    return [SENDER, *LIVE]


def test_faults_dynamodb_query_throttled_then_500_is_retried_and_delivered(
    send: Any, members: list[str], dynamodb: Any, management_api: FakeManagementApi, captured: Captured
) -> None:
    faults = DynamoFaults(send.store._client).script("Query", "throttle", "500")
    assert post(send) == {"statusCode": 200}
    got = [delivered_texts(management_api, cid) for cid in members]
    tally(reachable=4, reachable_delivered=got.count(["hello"]), live_deleted=4 - len(record_ids(dynamodb)))
    assert faults.injected["Query"] == 2 and faults.attempts["Query"] == 3  # the third attempt passed
    assert got == [["hello"]] * len(members)
    assert captured.metrics()["RecipientsDelivered"] == len(members)


@pytest.mark.parametrize(
    ("operation", "fault"),
    [("Query", "500"), ("Query", "throttle"), ("GetItem", "throttle"), ("UpdateItem", "unavailable")],
)
def test_faults_dynamodb_persistent_failure_answers_internal_and_broadcasts_nothing(
    send: Any,
    members: list[str],
    dynamodb: Any,
    management_api: FakeManagementApi,
    captured: Captured,
    backoff: list[float],
    operation: str,
    fault: str,
) -> None:
    faults = DynamoFaults(send.store._client).always(operation, fault)
    response = post(send)
    frames = {cid: management_api.frames_to(cid) for cid in members}
    metrics = captured.metrics()
    logged = [line for line in captured.logs() if line["level"] == "ERROR"]
    uncounted = int(metrics["InternalErrors"] != 1) + int(not logged)
    tally(live_deleted=4 - len(record_ids(dynamodb)), uncounted=uncounted)
    assert faults.attempts[operation] == DYNAMODB_ATTEMPTS  # botocore's standard mode, then it gives up
    assert len(backoff) == DYNAMODB_ATTEMPTS - 1 and sum(backoff) <= DYNAMODB_MAX_BACKOFF
    assert response == {"statusCode": 500}
    assert [f["code"] for f in frames[SENDER]] == ["internal"]
    assert all(frames[cid] == [] for cid in LIVE)
    assert metrics["InternalErrors"] == 1 and metrics["RecipientsDelivered"] == 0
    assert [line["message"] for line in logged] == ["sendMessage failed"]
    assert operation in str(logged[0].get("exception", ""))  # names the failing call, for the on-call
    assert record_ids(dynamodb) == set(members)


def test_faults_dynamodb_delete_of_a_gone_connection_failing_keeps_the_others_and_retries_later(
    send: Any, members: list[str], dynamodb: Any, management_api: FakeManagementApi, captured: Captured
) -> None:
    put_record(dynamodb, GONE, "general")
    faults = DynamoFaults(send.store._client).always("DeleteItem", "throttle")
    assert post(send, "first") == {"statusCode": 200}
    first = [delivered_texts(management_api, cid) for cid in members]
    still_there = GONE in record_ids(dynamodb)
    metrics = captured.metrics()
    logged = "could not delete gone connection" in [line.get("message") for line in captured.logs()]
    faults.remove()
    assert post(send, "second") == {"statusCode": 200}
    tally(
        reachable=len(members),
        reachable_delivered=first.count(["first"]),
        live_deleted=len(set(members) - record_ids(dynamodb)),
        uncounted=int(not logged),
    )
    assert first == [["first"]] * len(members)
    assert still_there and logged
    assert metrics["RecipientsDelivered"] == len(members)
    assert metrics.get("GoneConnectionsRemoved", 0) == 0 and metrics["GoneDeletesFailed"] == 1
    assert GONE not in record_ids(dynamodb)  # the next broadcast's 410 removed it
    assert record_ids(dynamodb) == set(members)


@pytest.fixture
def connect(dynamodb: Any) -> Any:
    return load_function("connect")


def connect_status(module: Any, cid: str = "CONNxxxxxxxxxx0=") -> int:
    """The handshake status the client gets: a function error becomes API Gateway's 502."""
    event = connect_event({"token": make_token("alice"), "room_id": "general"}, connection_id=cid)
    try:
        return int(module.handler(event, FakeContext())["statusCode"])
    except Exception:
        return 502


def test_faults_connect_put_throttled_once_is_retried_and_stored(
    connect: Any, dynamodb: Any, captured: Captured
) -> None:
    faults = DynamoFaults(connect.store._client).script("PutItem", "throttle")
    status = connect_status(connect)
    tally(reachable=1, reachable_delivered=int(status == 200))
    # The record twice (throttled, then retried), then its first room's membership.
    assert status == 200 and faults.attempts["PutItem"] == 3
    assert record_ids(dynamodb) == {"CONNxxxxxxxxxx0="}


# write-then-500: the write is applied and its answer lost; it must be undone.
@pytest.mark.parametrize("fault", ["throttle", "500", "write-then-500"])
def test_faults_connect_put_failing_refuses_and_stores_nothing(
    connect: Any, dynamodb: Any, captured: Captured, fault: str
) -> None:
    DynamoFaults(connect.store._client).always("PutItem", fault)
    status = connect_status(connect)
    stored = record_ids(dynamodb)
    tally(half_stored=len(stored))
    assert status >= 500  # the handshake fails; the client may retry
    assert stored == set()


def test_faults_connect_put_failure_is_logged_and_counted(connect: Any, captured: Captured) -> None:
    DynamoFaults(connect.store._client).always("PutItem", "throttle")
    connect_status(connect)
    errors = [line["message"] for line in captured.logs() if line["level"] == "ERROR"]
    counted = captured.metrics().get("ConnectionStoreErrors", 0)
    logged = errors.count("could not store the connection")
    summary.record("faults", uncounted=int(logged != 1) + int(counted != 1))
    assert errors == ["could not store the connection"]
    assert counted == 1


def test_faults_disconnect_delete_throttled_once_is_retried(dynamodb: Any, captured: Captured) -> None:
    put_record(dynamodb, "BYExxxxxxxxxxx0=", "general")
    put_record(dynamodb, "STAYxxxxxxxxxx0=", "general")
    disconnect = load_function("disconnect")
    faults = DynamoFaults(disconnect.store._client).script("DeleteItem", "throttle", "500")
    response = disconnect.handler(disconnect_event(connection_id="BYExxxxxxxxxxx0="), FakeContext())
    left = record_ids(dynamodb)
    tally(
        reachable=1,
        reachable_delivered=int("BYExxxxxxxxxxx0=" not in left),
        live_deleted=int("STAYxxxxxxxxxx0=" not in left),
    )
    # The record: 2 faults, then done; then its one membership.
    assert response == {"statusCode": 200} and faults.attempts["DeleteItem"] == 4
    assert left == {"STAYxxxxxxxxxx0="}
