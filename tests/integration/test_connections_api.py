"""The @connections management API, driven by boto3 as the functions drive it."""

from __future__ import annotations

import datetime as dt
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed

from local_stack import Stack
from shared.management_api import ManagementApiClient

from .helpers import EventLog, aws_client, connect, connection_id, request, wait_until

pytestmark = pytest.mark.timeout(60)


def raw(stack: Stack, method: str, cid: str, body: bytes | None = None) -> tuple[Any, bytes]:
    """One bare HTTP request to ``@connections/{cid}``: the response and its body."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.ws_port, timeout=10)
    conn.request(method, f"/{stack.config.stage}/@connections/{cid}", body=body)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


@pytest.fixture
def api(test_stack: Stack) -> Iterator[Any]:
    client = aws_client("apigatewaymanagementapi", test_stack.callback_url, max_attempts=1)
    yield client
    client.close()


def test_get_connection_returns_times_and_identity(test_stack: Stack, api: Any) -> None:
    with connect(test_stack.ws_url, user_agent_header="integration-test/1") as ws:
        cid = connection_id(ws)
        info = api.get_connection(ConnectionId=cid)
    assert info["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(info["ConnectedAt"], dt.datetime) and isinstance(info["LastActiveAt"], dt.datetime)
    assert info["LastActiveAt"] >= info["ConnectedAt"]
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "integration-test/1"}


def test_get_connection_raw_keys_are_lower_case(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        doc = json.loads(raw(test_stack, "GET", connection_id(ws))[1])
    assert set(doc) == {"connectedAt", "lastActiveAt", "identity"}
    assert doc["connectedAt"].endswith("Z")


def test_post_to_connection_delivers(test_stack: Stack, api: Any) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
        response = api.post_to_connection(ConnectionId=cid, Data=b'{"hello": "world"}')
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert json.loads(ws.recv(timeout=10)) == {"hello": "world"}


@pytest.mark.parametrize(
    ("call", "args"),
    [("post_to_connection", {"Data": b"x"}), ("delete_connection", {})],
    ids=["post", "delete"],
)
def test_unknown_connection_raises_gone(api: Any, call: str, args: dict[str, Any]) -> None:
    with pytest.raises(api.exceptions.GoneException) as info:
        getattr(api, call)(ConnectionId="AAAAAAAAAAAAAAA=", **args)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "GoneException"


def test_post_to_closed_connection_raises_gone(test_stack: Stack, api: Any) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
    assert wait_until(lambda: cid not in test_stack.connection_ids(), timeout=5)
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=cid, Data=b"x")
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId=cid)


def test_delete_connection_closes_and_fires_disconnect(
    test_stack: Stack, api: Any, event_log: EventLog
) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
        response = api.delete_connection(ConnectionId=cid)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId=cid)
    assert event_log.wait_for(cid, "$disconnect")["requestContext"]["disconnectStatusCode"] == 1000


def test_wrong_stage_is_forbidden(test_stack: Stack) -> None:
    client = aws_client("apigatewaymanagementapi", f"http://127.0.0.1:{test_stack.ws_port}/nope")
    with pytest.raises(client.exceptions.ForbiddenException):
        client.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x")


def test_management_api_keeps_connections_alive(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        cid = connection_id(ws)
        conn = http.client.HTTPConnection("127.0.0.1", test_stack.ws_port, timeout=10)
        sockets = set()
        for i in range(5):
            conn.request("POST", f"/{test_stack.config.stage}/@connections/{cid}", body=f"m{i}".encode())
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close
            sockets.add(id(conn.sock))
        conn.close()
        assert len(sockets) == 1
        assert [ws.recv(timeout=10) for _ in range(5)] == [f"m{i}" for i in range(5)]


def test_function_reaches_connections_api_through_callback_url(test_stack: Stack) -> None:
    with connect(test_stack.ws_url) as ws:
        assert json.loads(request(ws, {"action": "callback"})) == {"callback": True, "sourceIp": "127.0.0.1"}


# -- SigV4, when the stack is given credentials ------------------------------------------------------------
@pytest.fixture(scope="module")
def signed_stack(local_stack_factory_module: Any) -> Stack:
    return local_stack_factory_module(verify_signatures=True, web_port=None)


def _client(stack: Stack, key: str, secret: str) -> Any:
    return aws_client("apigatewaymanagementapi", stack.callback_url, max_attempts=1, key=key, secret=secret)


def test_signed_post_with_the_stack_credentials_delivers(signed_stack: Stack) -> None:
    with connect(signed_stack.ws_url) as ws:
        cid = connection_id(ws)  # ends in "=": the signed path is percent-encoded
        _client(signed_stack, "local", "local").post_to_connection(ConnectionId=cid, Data=b"boto3")
        ManagementApiClient(
            signed_stack.callback_url,
            pool_size=1,
            credentials=Credentials("local", "local"),
            region=signed_stack.config.region,
        ).post_to_connection(ConnectionId=cid, Data=b"ours")
        assert [ws.recv(timeout=10), ws.recv(timeout=10)] == ["boto3", "ours"]
        # the function's own posts are signed with the dummy credentials it gets
        assert json.loads(request(ws, {"action": "callback"}))["callback"] is True


@pytest.mark.parametrize(
    ("key", "secret", "error_type"),
    [("local", "wrong", "InvalidSignatureException"), ("AKIAOTHER", "local", "UnrecognizedClientException")],
)
def test_badly_signed_requests_are_403(signed_stack: Stack, key: str, secret: str, error_type: str) -> None:
    with connect(signed_stack.ws_url) as ws:
        cid = connection_id(ws)
        client = _client(signed_stack, key, secret)
        for call in (
            lambda: client.post_to_connection(ConnectionId=cid, Data=b"x"),
            lambda: client.get_connection(ConnectionId=cid),
            lambda: client.delete_connection(ConnectionId=cid),
        ):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert info.value.response["Error"]["Code"] == error_type
        assert json.loads(request(ws, {"action": "echo"}))["event"]  # still open: nothing was done


def test_unsigned_request_is_403_missing_authentication_token(signed_stack: Stack) -> None:
    with connect(signed_stack.ws_url) as ws:
        response, body = raw(signed_stack, "POST", connection_id(ws), b"x")
    assert response.status == 403
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(body) == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize("stack_fixture", ["test_stack", "signed_stack"], ids=["unsigned", "signed"])
def test_post_over_128kb_is_413(request: pytest.FixtureRequest, stack_fixture: str) -> None:
    stack = request.getfixturevalue(stack_fixture)
    api = _client(stack, "local", "local")
    with connect(stack.ws_url) as ws:
        cid = connection_id(ws)
        with pytest.raises(ClientError) as info:
            api.post_to_connection(ConnectionId=cid, Data=b"x" * (128 * 1024 + 1))
        assert info.value.response["Error"]["Code"] == "PayloadTooLargeException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == (
            "PayloadTooLargeException"
        )
        api.post_to_connection(ConnectionId=cid, Data=b"y" * (128 * 1024))  # exactly the limit is fine
        assert len(ws.recv(timeout=10)) == 128 * 1024


def test_old_signature_is_refused() -> None:
    # Replaying a captured request later: its X-Amz-Date is outside the allowed clock skew.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    from local_stack import sigv4

    url = "http://127.0.0.1:3001/dev/@connections/AAAAAAAAAAAAAAA%3D"
    signed = AWSRequest(method="POST", url=url, data=b"x")
    SigV4Auth(Credentials("local", "local"), "execute-api", "us-east-1").add_auth(signed)
    headers = {**dict(signed.headers.items()), "Host": "127.0.0.1:3001"}
    check = dict(
        method="POST", url=url, headers=headers, body=b"x", credentials={"local": "local"}, region="us-east-1"
    )
    assert sigv4.verify(**check) is None  # type: ignore[arg-type]
    later = dt.datetime.now(dt.UTC) + sigv4.MAX_SKEW + dt.timedelta(seconds=5)
    refused = sigv4.verify(**check, now=later)  # type: ignore[arg-type]
    assert refused is not None and refused.error_type == "InvalidSignatureException"
    wrong_region = sigv4.verify(**{**check, "region": "eu-west-1"})  # type: ignore[arg-type]
    assert wrong_region is not None and wrong_region.error_type == "InvalidSignatureException"
