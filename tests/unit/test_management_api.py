"""The production management-API client (SigV4 + libcurl) against boto3's: the same bytes on the wire, the
same exceptions, a bounded pool, timeouts as BotoCoreError."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import itertools
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest.mock import Mock
from urllib.parse import unquote

import boto3
import botocore.auth
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.utils import percent_encode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from urllib3 import HTTPResponse

from local_stack.testing import FakeManagementApi
from shared import management_api, runtime
from shared.management_api import ManagementApiClient, region_of
from shared.sender import Outcome, classify

FROZEN = datetime.datetime(2026, 11, 29, 12, 34, 56)
# A real-looking id with every character base64 can hold that needs encoding.
CONNECTION_ID = "BFHp+/hfCWIAMCKlQ="
DATA = b'{"action": "message", "message": "h\xc3\xa9llo"}'


@pytest.fixture
def scripted() -> Iterator[FakeManagementApi]:
    """The kit's fake, answering every post as a test sets ``answer``; ``seen`` records the requests."""
    with FakeManagementApi(answer=(200, {}, b"{}")) as api:
        yield api


@pytest.fixture(autouse=True)
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """No botocore session cached (shared.runtime): these tests change where it finds credentials."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(runtime, "_own_session", None)


@pytest.fixture
def signing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock frozen; Lambda-like environment credentials, with a session token (which is signed too)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: FROZEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLE//token==")


def boto3_client(endpoint_url: str, region: str = "us-east-1") -> Any:
    """As shared/sender.py built it before this client (one attempt; RetryPolicy retries)."""
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5)
    session = boto3.session.Session()  # the default session may hold credentials of an earlier test
    return session.client(
        "apigatewaymanagementapi", endpoint_url=endpoint_url, region_name=region, config=config
    )


def our_client(endpoint: str, **options: Any) -> ManagementApiClient:
    return ManagementApiClient(endpoint, pool_size=options.pop("pool_size", 1), **options)


def post(client: Any, connection_id: str = CONNECTION_ID, data: bytes = DATA) -> Any:
    return client.post_to_connection(ConnectionId=connection_id, Data=data)


def assert_fails_retried(error: type[BotoCoreError], endpoint: str, **options: Any) -> None:
    """A post to ``endpoint`` raises ``error``, a botocore error the sender retries."""
    with pytest.raises(error) as raised:
        post(our_client(endpoint, **options))
    assert isinstance(raised.value, BotoCoreError)
    assert classify(raised.value) == (Outcome.FAILED, True)


SIGNED = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "Host")


def test_wire_request_and_signature_equal_boto3s(scripted: FakeManagementApi, signing: None) -> None:
    post(boto3_client(scripted.endpoint_url))
    post(our_client(scripted.endpoint_url))
    boto, lean = scripted.seen
    assert lean.path == boto.path == "/prod/@connections/BFHp%2B%2FhfCWIAMCKlQ%3D"
    assert unquote(lean.path.rsplit("/", 1)[1]) == CONNECTION_ID
    assert (lean.method, lean.body) == (boto.method, boto.body) == ("POST", DATA)
    assert {h: lean.headers[h] for h in SIGNED} == {h: boto.headers[h] for h in SIGNED}
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in lean.headers["Authorization"]
    assert "/20261129/us-east-1/execute-api/aws4_request" in lean.headers["Authorization"]


def test_signature_equals_boto3s_for_an_execute_api_host(
    monkeypatch: pytest.MonkeyPatch, signing: None
) -> None:
    """HTTPS (payload hash as AWS gets it), region taken from the host although the session says us-east-1."""
    endpoint = "https://abc123defg.execute-api.eu-west-2.amazonaws.com/prod"
    sent: dict[str, Any] = {}

    def before_send(request: Any, **kwargs: Any) -> AWSResponse:
        sent["boto3"] = (
            request.url,
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
        )
        raw = HTTPResponse(body=io.BytesIO(b"{}"), status=200, preload_content=False)
        return AWSResponse(request.url, 200, {}, raw)

    boto = boto3_client(endpoint, region="eu-west-2")
    boto.meta.events.register("before-send", before_send)
    post(boto)

    client = our_client(endpoint)
    assert client.region == "eu-west-2"

    send = Mock(return_value=(200, {}, b"{}"))
    monkeypatch.setattr(client, "_send", send)
    post(client)

    boto_url, boto_headers = sent["boto3"]
    [(lean_path, lean_headers, lean_body), _] = send.call_args
    assert boto_url == endpoint.removesuffix("/prod") + lean_path
    assert lean_body == DATA
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        assert lean_headers[name] == boto_headers[name], name


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        ("https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod", "ap-southeast-2"),
        ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod", "cn-north-1"),
        ("https://chat.example.com/prod", None),
        ("http://127.0.0.1:3001/prod", None),
    ],
)
def test_region_comes_from_an_execute_api_host_else_the_session(endpoint: str, region: str | None) -> None:
    assert region_of(endpoint) == region
    assert our_client(endpoint).region == (region or "us-east-1")


def test_no_region_anywhere_fails_at_construction_like_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(NoRegionError):
        our_client("https://chat.example.com/prod")


def test_no_credentials_fails_each_post_as_a_botocore_error(
    monkeypatch: pytest.MonkeyPatch, scripted: FakeManagementApi
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert_fails_retried(NoCredentialsError, scripted.endpoint_url)
    assert scripted.seen == []


def test_refreshable_credentials_are_frozen_per_request(scripted: FakeManagementApi) -> None:
    keys = iter(["AKIDFIRST", "AKIDSECOND"])

    def refresh() -> dict[str, str]:
        # within botocore's 15-minute advisory window: every read of the credentials refreshes them
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": next(keys),
            "secret_key": "secret",
            "token": "token",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    post(our_client(scripted.endpoint_url, credentials=credentials), "A", b"{}")
    [authorization] = [s.headers["Authorization"] for s in scripted.seen]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDSECOND/")


ERROR_CASES = [
    # (status, headers, body)
    (410, {"x-amzn-ErrorType": "GoneException"}, b'{"message": null}'),
    (410, {}, b'{"message": null}'),
    (403, {"x-amzn-ErrorType": "ForbiddenException"}, b'{"message": "Forbidden"}'),
    (403, {}, b'{"message": "Forbidden"}'),
    (413, {"x-amzn-ErrorType": "PayloadTooLargeException"}, b'{"message": "Request entity too large"}'),
    (413, {}, b'{"message": "Request entity too large"}'),
    (429, {"x-amzn-ErrorType": "LimitExceededException:http://internal.amazon.com/"}, b'{"message": "x"}'),
    (429, {}, b'{"message": "Too Many Requests"}'),
    (500, {"x-amzn-ErrorType": "InternalServerError"}, b'{"message": "Internal server error"}'),
    (500, {}, b'{"message": "Internal server error"}'),
    (500, {"x-amzn-ErrorType": "InternalServerError"}, b""),  # generic: botocore ignores the header
    (503, {}, b"<html><body>Service Unavailable</body></html>"),
    (410, {}, b'{"code": "GoneException", "message": "gone"}'),
    (400, {}, b'{"__type": "com.amazonaws#BadRequestException", "Message": "bad"}'),
    (502, {"x-amzn-RequestId": "req-1"}, b"not json"),
]


@pytest.mark.parametrize(("status", "headers", "body"), ERROR_CASES)
def test_errors_are_the_client_errors_boto3_raises(
    scripted: FakeManagementApi, status: int, headers: dict[str, str], body: bytes
) -> None:
    scripted.answer = (status, {"Content-Type": "application/json", **headers}, body)
    with pytest.raises(ClientError) as from_boto3:
        post(boto3_client(scripted.endpoint_url))
    with pytest.raises(ClientError) as from_lean:
        post(our_client(scripted.endpoint_url))
    lean, boto = from_lean.value, from_boto3.value
    assert lean.operation_name == "PostToConnection"
    assert lean.response["Error"] == boto.response["Error"]
    lean_meta, boto_meta = lean.response["ResponseMetadata"], boto.response["ResponseMetadata"]
    assert lean_meta["HTTPStatusCode"] == status
    lean_meta["HTTPHeaders"].pop("date"), boto_meta["HTTPHeaders"].pop("date")  # may tick between the two
    assert lean_meta == boto_meta
    assert str(lean) == str(boto)
    assert classify(lean) == classify(boto)


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (410, "GoneException", (Outcome.GONE, False)),
        (410, None, (Outcome.GONE, False)),
        (403, "ForbiddenException", (Outcome.FAILED, False)),
        (403, None, (Outcome.FAILED, False)),
        (413, "PayloadTooLargeException", (Outcome.FAILED, False)),
        (413, None, (Outcome.FAILED, False)),
        (429, "LimitExceededException", (Outcome.FAILED, True)),
        (429, None, (Outcome.FAILED, True)),
        (500, "InternalServerError", (Outcome.FAILED, True)),
        (500, None, (Outcome.FAILED, True)),
    ],
)
def test_error_codes_and_how_the_sender_treats_them(
    scripted: FakeManagementApi, status: int, error_type: str | None, expected: tuple[Outcome, bool]
) -> None:
    headers = {"x-amzn-ErrorType": error_type} if error_type else {}
    scripted.answer = (status, headers, b'{"message": "no"}')
    with pytest.raises(ClientError) as raised:
        post(our_client(scripted.endpoint_url))
    # The code is the error type header's, else the status.
    assert raised.value.response["Error"] == {"Code": error_type or str(status), "Message": "no"}
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert classify(raised.value) == expected


def test_200_returns_none_and_delivers(management_api: FakeManagementApi) -> None:
    management_api.live.add(CONNECTION_ID)
    assert post(our_client(management_api.endpoint_url)) is None
    assert management_api.delivered == [(CONNECTION_ID, DATA)]


def test_200_concurrent_posts_never_exceed_the_pool(management_api: FakeManagementApi) -> None:
    management_api.latency = 0.02
    ids = [f"P{i:014d}=" for i in range(200)]
    management_api.live.update(ids)
    client = our_client(management_api.endpoint_url, pool_size=8)
    with ThreadPoolExecutor(max_workers=50) as executor:  # more callers than connections
        list(executor.map(lambda cid: post(client, cid, b"{}"), ids))
    assert sorted(cid for cid, _ in management_api.delivered) == ids
    assert 1 < management_api.max_in_flight <= 8
    assert len(management_api.peers) <= 8  # callers waited for a handle: no throw-away connections


def test_connections_are_kept_alive(scripted: FakeManagementApi) -> None:
    client = our_client(scripted.endpoint_url, pool_size=2)
    for i in range(5):
        post(client, f"K{i}", b"{}")
    assert len(scripted.peers) == 1
    assert len(scripted.seen) == 5


@pytest.mark.parametrize("reused", [False, True], ids=["new-connection", "kept-alive-connection"])
def test_read_timeout_is_a_retried_botocore_error(scripted: FakeManagementApi, reused: bool) -> None:
    """A post gets connect_timeout + read_timeout in all; past it, once connected, a read timeout."""
    client = our_client(scripted.endpoint_url, connect_timeout=0.05, read_timeout=0.05)
    if reused:
        post(client)
    scripted.latency = 0.3
    with pytest.raises(ReadTimeoutError) as raised:
        post(client)
    assert classify(raised.value) == (Outcome.FAILED, True)
    assert len(scripted.peers) == 1


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A listening socket whose accept queue is full: a further connect's SYN is dropped, so it times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_connect_timeout_is_a_retried_botocore_error(unanswered_port: int) -> None:
    assert_fails_retried(ConnectTimeoutError, f"http://127.0.0.1:{unanswered_port}/prod", connect_timeout=0.1)


def test_refused_connection_is_an_endpoint_connection_error() -> None:
    assert_fails_retried(EndpointConnectionError, "http://127.0.0.1:9/prod")


def test_connection_closed_without_an_answer_is_a_botocore_error() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        assert_fails_retried(ConnectionClosedError, f"http://127.0.0.1:{listener.getsockname()[1]}/prod")
    finally:
        listener.close()


def test_text_data_is_sent_as_utf8_like_boto3(management_api: FakeManagementApi) -> None:
    management_api.live.add("TEXT")
    post(our_client(management_api.endpoint_url), "TEXT", "héllo")  # type: ignore[arg-type]
    assert management_api.delivered == [("TEXT", "héllo".encode())]


def _botocore_headers(credentials: Any, url: str, data: bytes, region: str) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=data)
    botocore.auth.SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://abc123defg.execute-api.eu-west-2.amazonaws.com/prod",
        "http://127.0.0.1:3001/prod",
        "https://chat.example.com:8443/v1/",
    ],
)
@pytest.mark.parametrize("connection_id", [CONNECTION_ID, "plain", "..", ".", "a b~c", "é"])
@pytest.mark.parametrize("token", ["IQoJb3JpZ2luX2VjEXAMPLE//token==", None])
def test_signer_equals_botocores_sigv4_across_days_and_keys(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, connection_id: str, token: str | None
) -> None:
    """The cached signing key follows the day and the secret key: exactly what botocore's SigV4Auth adds."""
    client = our_client(endpoint, region="eu-west-2", credentials=object())
    path = f"{client._path}/@connections/{percent_encode(connection_id)}"
    days = [FROZEN, FROZEN + datetime.timedelta(hours=1), FROZEN + datetime.timedelta(days=1)]
    secrets = ["secret-one", "secret-one", "secret-two"]
    for now, secret in zip(days * 2, secrets + secrets[::-1], strict=True):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, now=now, **k: now)
        credentials = ReadOnlyCredentials("AKIDEXAMPLE", secret, token)
        ours = client._signer.headers(credentials, path, DATA)
        assert ours == _botocore_headers(credentials, client._origin + path, DATA, "eu-west-2")


def test_signing_key_is_derived_once_per_day(monkeypatch: pytest.MonkeyPatch) -> None:
    derivations: list[str] = []
    real = management_api._hmac
    monkeypatch.setattr(management_api, "_hmac", lambda key, msg: derivations.append(msg) or real(key, msg))
    client = our_client("http://127.0.0.1:1/prod", region="us-east-1", credentials=object())
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)
    for now in (FROZEN, FROZEN, FROZEN + datetime.timedelta(hours=11), FROZEN + datetime.timedelta(days=1)):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, now=now, **k: now)
        client._signer.headers(credentials, "/prod/@connections/A", DATA)
    scope = ["us-east-1", "execute-api", "aws4_request"]
    assert derivations == ["20261129", *scope, "20261130", *scope]


class RawServer:
    """HTTP/1.1 on a bare socket, for what aiohttp will not do. ``plan[n]`` lists what the n-th connection
    does with each request it reads in full: ``"200"`` (answer, keep alive), ``"answer-and-close"``,
    ``"close"`` (close unanswered), ``"reset"`` (abort unanswered: RST); past its plan, or past the plan's
    connections, every request is answered. ``requests``: (connection number, request line, body)."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def __init__(self, plan: list[list[str]], tls: ssl.SSLContext | None = None) -> None:
        self.plan = plan
        self.tls = tls
        self.requests: list[tuple[int, str, bytes]] = []
        self.closed = threading.Event()  # a connection ended by the plan
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        scheme = "https" if tls else "http"
        self.endpoint_url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}/prod"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for number in itertools.count():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            steps = self.plan[number] if number < len(self.plan) else []
            threading.Thread(target=self._serve, args=(conn, number, steps), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int, steps: list[str]) -> None:
        conn.settimeout(10)
        with conn, contextlib.suppress(OSError):  # the client gone, 10 s of silence, a failed handshake: done
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            for step in itertools.chain(steps, itertools.repeat("200")):
                request = self._read(conn)
                if request is None:
                    return
                self.requests.append((number, *request))
                if step in ("200", "answer-and-close"):
                    conn.sendall(self.ANSWER)
                if step == "200":
                    continue
                if step == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                self.closed.set()
                return

    @staticmethod
    def _read(conn: socket.socket) -> tuple[str, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0
        )
        while len(body) < length:
            body += conn.recv(65536)
        return lines[0], body

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Any]:
    servers: list[RawServer] = []

    def start(plan: list[list[str]], tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(plan, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("drop", ["close", "reset"])
def test_a_post_the_server_read_on_a_kept_alive_connection_is_never_sent_again(
    raw_server: Any, drop: str
) -> None:
    """The server reads the second post in full and drops the connection unanswered: the post may have been
    delivered. libcurl would resend it on a fresh connection by itself (an unlogged, uncounted duplicate);
    instead it fails as urllib3 failed it, and the sender's counted, logged retry decides."""
    server = raw_server([["200", drop]])
    client = our_client(server.endpoint_url)
    post(client, "FIRST")
    with pytest.raises(ConnectionClosedError) as raised:
        post(client, "SECOND")
    assert classify(raised.value) == (Outcome.FAILED, True)
    assert [line for _, line, _ in server.requests] == [
        "POST /prod/@connections/FIRST HTTP/1.1",
        "POST /prod/@connections/SECOND HTTP/1.1",
    ]
    post(client, "THIRD")  # the client recovers: a new connection
    assert [number for number, _, _ in server.requests] == [0, 0, 1]


def test_an_idle_kept_alive_connection_the_server_closed_is_replaced_without_an_error(
    raw_server: Any,
) -> None:
    """As API Gateway closes an idle connection: the next post opens a new one, sent once, no error."""
    server = raw_server([["answer-and-close"]])
    client = our_client(server.endpoint_url)
    post(client, "FIRST")
    assert server.closed.wait(5)
    post(client, "SECOND")
    assert [(number, line) for number, line, _ in server.requests] == [
        (0, "POST /prod/@connections/FIRST HTTP/1.1"),
        (1, "POST /prod/@connections/SECOND HTTP/1.1"),
    ]


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    san: x509.GeneralName | None = None,
) -> x509.Certificate:
    """A certificate for ``subject`` signed by ``ca`` (name, key), or a self-signed CA when there is none."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = ca or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PEM files: ``ca``, a CA's certificate; ``{label}_cert`` / ``{label}_key``, a server certificate it
    signed for 127.0.0.1 (``ip``) or for another name (``other``)."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("test CA", ca_key)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files = {"ca": str(folder / "ca.pem")}
    sans = {"ip": x509.IPAddress(ipaddress.ip_address("127.0.0.1")), "other": x509.DNSName("other.example")}
    for label, san in sans.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(label, key, (ca_cert.subject, ca_key), san)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for suffix, pem in (("cert", cert.public_bytes(serialization.Encoding.PEM)), ("key", pem_key)):
            (folder / f"{label}_{suffix}.pem").write_bytes(pem)
            files[f"{label}_{suffix}"] = str(folder / f"{label}_{suffix}.pem")
    return files


def _server_tls(files: dict[str, str], label: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files[f"{label}_cert"], files[f"{label}_key"])
    context.set_alpn_protocols(["h2", "http/1.1"])  # as AWS offers both: the client must pick HTTP/1.1
    return context


def test_https_trusts_the_sessions_ca_bundle_and_speaks_http_1_1(
    raw_server: Any, tls_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production is HTTPS: botocore's CA bundle setting (AWS_CA_BUNDLE here) is the one libcurl trusts."""
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_files["ca"])
    server = raw_server([], tls=_server_tls(tls_files, "ip"))
    client = our_client(server.endpoint_url)
    post(client, "A")
    post(client, "B")
    assert [(number, line) for number, line, _ in server.requests] == [
        (
            0,
            "POST /prod/@connections/A HTTP/1.1",
        ),  # not HTTP/2 (whose preface would be read here); kept alive
        (0, "POST /prod/@connections/B HTTP/1.1"),
    ]


@pytest.mark.parametrize(
    ("label", "trusted"), [("ip", False), ("other", True)], ids=["unknown-ca", "name-mismatch"]
)
def test_https_certificate_failures_are_retried_ssl_errors(
    raw_server: Any, tls_files: dict[str, str], monkeypatch: pytest.MonkeyPatch, label: str, trusted: bool
) -> None:
    """Verification is on: a certificate from a CA outside the bundle, or for another name, is refused."""
    if trusted:
        monkeypatch.setenv("AWS_CA_BUNDLE", tls_files["ca"])
    server = raw_server([], tls=_server_tls(tls_files, label))
    assert_fails_retried(SSLError, server.endpoint_url)
    assert server.requests == []


@pytest.mark.parametrize(
    "body", [b"", b"\x00nul\x00bytes\x00", bytes(range(256)) * 512], ids=["empty", "nul-bytes", "128-KiB"]
)
def test_the_request_carries_exactly_the_body_and_only_these_headers(
    scripted: FakeManagementApi, signing: None, body: bytes
) -> None:
    """None of curl's defaults (Content-Type: application/x-www-form-urlencoded, Accept: */*,
    Expect: 100-continue, chunked encoding) reach API Gateway; the body arrives byte for byte."""
    post(our_client(scripted.endpoint_url), "A", body)
    [seen] = scripted.seen
    assert seen.body == body
    assert sorted(seen.headers) == sorted([*SIGNED, "Content-Length", "User-Agent"])
    assert seen.headers["Content-Length"] == str(len(body))


def test_a_timed_out_post_leaves_no_late_answer_for_the_next(management_api: FakeManagementApi) -> None:
    """The late 200 of a timed-out post is never read as the answer to the next one: a new connection."""
    management_api.live.add("SLOW")
    management_api.latencies["SLOW"] = 0.3
    client = our_client(management_api.endpoint_url, connect_timeout=0.05, read_timeout=0.05)
    with pytest.raises(ReadTimeoutError):
        post(client, "SLOW")
    with pytest.raises(ClientError) as raised:
        post(client, "gone-A")  # not live: 410
    assert classify(raised.value) == (Outcome.GONE, False)
    assert len(management_api.peers) == 2


def test_proxies_named_in_the_environment_are_not_used(
    management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As before (urllib3 read none): the management API is posted to directly."""
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens: a proxy used would be refused
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    management_api.live.add("A")
    post(our_client(management_api.endpoint_url), "A", b"{}")
    assert management_api.delivered == [("A", b"{}")]
