"""The API Gateway management API's ``PostToConnection``, signed with SigV4 and sent with libcurl (pycurl).

Why not ``boto3.client("apigatewaymanagementapi")``: fan-out is CPU-bound (every post holds the GIL while
it builds, signs and parses; a 512 MB Lambda has about 0.29 vCPU), and boto3 spends several times this
client's CPU per post (``python -m bench post``, bench/README.md): parameter validation, event hooks,
endpoint rules, serialisation, response parsing and the retry handler all run per call, and botocore's
signer derives its key with four HMACs per request where this one derives it once a day.
Why libcurl rather than urllib3: urllib3 and http.client parse every answer in Python (``email.parser``
for the headers) and take and drop the GIL at every socket call; pycurl's ``perform`` sends, waits and
frames the answer in C with the GIL released (only the body and the header lines come back through small
callbacks), so a post costs a fraction of urllib3's CPU and 32 threads posting at once do not queue on the
GIL (measured side by side in bench/README.md, "CPU per post").

This client keeps only what reaches the wire, so AWS sees the same request: ``POST
{endpoint}/@connections/{id}`` over HTTP/1.1 with the raw bytes, the id percent-encoded as botocore encodes
it, SigV4 for service ``execute-api`` signed exactly as botocore's ``SigV4Auth`` signs it (tests compare the
headers), botocore's credential chain and CA bundle. It raises what boto3 raises, so
``shared.sender.classify`` cannot tell them apart:

- a non-2xx answer: ``botocore.exceptions.ClientError`` for operation ``PostToConnection``, its response
  parsed as botocore's rest-json parser does (``Error.Code`` from ``x-amzn-ErrorType``, else the body's
  ``code``/``__type``, else the status; ``ResponseMetadata.HTTPStatusCode`` and lower-cased
  ``HTTPHeaders``). Only the typed subclasses (``client.exceptions.GoneException``) are not raised: nothing
  here catches them, and loading the service model to build them would cost the cold start what boto3 does.
- a network failure or timeout: the ``BotoCoreError`` subclass botocore's HTTP layer raises for it
  (``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``, ``ConnectionClosedError``,
  ``SSLError``), from libcurl's error code.

Timeouts: at most ``connect_timeout`` to connect, and ``connect_timeout + read_timeout`` for the whole post
(libcurl's transfer timeout); a post that timed out once connected is a ``ReadTimeoutError``.
Backpressure: ``pool_size`` curl handles, each keeping one connection alive; a caller waits for a free
handle when all are busy (never an extra connection); no retries here (``shared.sender.RetryPolicy``
retries). As with urllib3, a kept-alive connection the server has closed is replaced before a post is sent
on it, and one that dies after the post was sent is a ``ConnectionClosedError``: libcurl's own silent resend
of that post (the server may have read it) is refused. Proxies named in the environment are not used
(libcurl would read them; it is told not to).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import queue
import re
import select
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.auth
import botocore.session
import pycurl
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path
from botocore.utils import normalize_url_path, percent_encode

from shared import runtime

OPERATION = "PostToConnection"
SERVICE = "execute-api"
_EXECUTE_API_HOST = re.compile(r"[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


def region_of(endpoint_url: str) -> str | None:
    """``us-east-1`` for ``https://abc123.execute-api.us-east-1.amazonaws.com/prod``; None for other hosts."""
    match = _EXECUTE_API_HOST.fullmatch(urlsplit(endpoint_url).hostname or "")
    return match.group(1) if match else None


class ManagementApiClient:
    """``post_to_connection`` for one management API endpoint (``https://{domain}/{stage}``); thread-safe.

    Credentials come from the process's botocore session (``shared.runtime``, shared with boto3's DynamoDB
    client) and its default chain, resolved once (in Lambda: the environment's, static for
    its life); each request signs with ``get_frozen_credentials()``, so refreshable credentials still
    refresh. The region is the endpoint's for ``*.execute-api.<region>.amazonaws.com``, else the session's.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        pool_size: int,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        region: str | None = None,
        credentials: Any = None,
        session: botocore.session.Session | None = None,
    ) -> None:
        session = session or runtime.botocore_session()
        self.endpoint_url = endpoint_url.rstrip("/")
        self.pool_size = pool_size
        self.region = region or region_of(endpoint_url) or session.get_config_variable("region")
        if not self.region:
            raise NoRegionError()  # as boto3.client(...) raises at construction
        self._credentials = credentials if credentials is not None else session.get_credentials()
        parts = urlsplit(self.endpoint_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path
        self._signer = _SigV4(self.region, botocore.auth._host_from_url(self.endpoint_url))
        self._curl_options: list[tuple[int, Any]] = [
            (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1),  # as botocore speaks to AWS
            (pycurl.NOSIGNAL, 1),  # required with threads: no SIGALRM for timeouts
            (pycurl.CONNECTTIMEOUT_MS, round(connect_timeout * 1000)),
            (pycurl.TIMEOUT_MS, round((connect_timeout + read_timeout) * 1000)),
            (pycurl.TCP_KEEPALIVE, 1),
            (pycurl.TCP_NODELAY, 1),
            (pycurl.MAXCONNECTS, 1),  # each handle keeps one connection: pool_size connections in all
            (pycurl.PROXY, ""),
            (pycurl.USERAGENT, f"ws-chat-backend {pycurl.version.split()[0]}"),
        ]
        if parts.scheme == "https":
            ca_bundle = session.get_config_variable("ca_bundle") or get_cert_path(True)
            self._curl_options.append((pycurl.CAINFO, ca_bundle))
        # LIFO: the handle used last (its connection surely alive and warm) is taken first.
        self._handles: queue.LifoQueue[pycurl.Curl] = queue.LifoQueue()
        for _ in range(pool_size):
            self._handles.put(self._new_handle())

    def _new_handle(self) -> pycurl.Curl:
        handle = pycurl.Curl()
        for option, value in self._curl_options:
            handle.setopt(option, value)
        return handle

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        if isinstance(Data, str):  # boto3 accepts text for a blob too
            Data = Data.encode("utf-8")
        path = f"{self._path}/@connections/{percent_encode(ConnectionId)}"
        if self._credentials is None:
            raise NoCredentialsError()
        headers = self._signer.headers(self._credentials.get_frozen_credentials(), path, Data)
        status, response_headers, body = self._send(path, headers, Data)
        if not 200 <= status < 300:
            raise ClientError(_error_response(status, response_headers, body), OPERATION)

    def _send(self, path: str, headers: dict[str, str], data: bytes) -> tuple[int, dict[str, str], bytes]:
        """One POST on a pooled handle: (status, headers lower-cased, body). Network errors raise as
        botocore's."""
        url = self._origin + path
        lines = [f"Host: {self._signer.host}", *(f"{name}: {value}" for name, value in headers.items())]
        lines += ["Content-Type:", "Accept:", "Expect:"]  # curl's defaults, not part of this request
        handle = self._handles.get()
        try:
            answer = _Answer()
            # libcurl reuses a connection used in the last second unchecked, counting on that resend: check
            # it as urllib3 did. Readable while idle: closed by the server (or stray bytes), so not reused.
            handle.setopt(pycurl.FRESH_CONNECT, _dropped(handle.getinfo(pycurl.ACTIVESOCKET)))
            handle.setopt(pycurl.URL, url)
            handle.setopt(pycurl.HTTPHEADER, lines)
            handle.setopt(pycurl.POST, 1)
            handle.setopt(pycurl.POSTFIELDSIZE, len(data))
            # Read once, never rewound: libcurl resends a request by itself when a reused connection dies
            # unanswered, but the server may have read it (delivered the frame). It fails instead, as
            # urllib3 failed it, and the sender's counted retry decides.
            handle.setopt(pycurl.READFUNCTION, io.BytesIO(data).read)
            handle.setopt(pycurl.HEADERFUNCTION, answer.header_line)
            handle.setopt(pycurl.WRITEFUNCTION, answer.body.write)
            try:
                handle.perform()
            except pycurl.error as error:
                raise _network_error(error, url) from None
            return handle.getinfo(pycurl.RESPONSE_CODE), answer.headers, answer.body.getvalue()
        finally:
            self._handles.put(handle)

    def close(self) -> None:
        """Close every idle handle's connection (the handles stay usable: a later post reconnects)."""
        handles = []
        while True:
            try:
                handles.append(self._handles.get_nowait())
            except queue.Empty:
                break
        for handle in handles:
            handle.close()
            self._handles.put(self._new_handle())


class _SigV4:
    """botocore's ``SigV4Auth.add_auth`` for this one request shape (POST, no query, headers host, x-amz-date
    and x-amz-security-token, payload hashed), with the signing key derived once per day and secret key
    instead of with four HMACs per request; the same signature, byte for byte (tests compare them).
    Per post that is 1 HMAC + 2 SHA-256 instead of botocore's AWSRequest, header maps and 5 HMACs."""

    def __init__(self, region: str, host: str) -> None:
        self._scope = f"{region}/{SERVICE}/aws4_request"
        self.host = host  # the Host header signed (and sent)
        self._region = region
        self._key: tuple[str, str, bytes] = ("", "", b"")  # (secret key, yyyymmdd, signing key)

    def signing_key(self, secret_key: str, day: str) -> bytes:
        cached_secret, cached_day, key = self._key
        if cached_secret != secret_key or cached_day != day:
            key = _hmac(f"AWS4{secret_key}".encode(), day)
            for part in (self._region, SERVICE, "aws4_request"):
                key = _hmac(key, part)
            self._key = (secret_key, day, key)  # one tuple: threads see the old or the new, never half
        return key

    def headers(self, credentials: Any, path: str, data: bytes) -> dict[str, str]:
        # botocore.auth's clock, looked up per call as SigV4Auth does (tests freeze it there).
        timestamp = botocore.auth.get_current_datetime().strftime(botocore.auth.SIGV4_TIMESTAMP)
        day = timestamp[:8]
        token = credentials.token
        if token:
            signed = "host;x-amz-date;x-amz-security-token"
            canonical_headers = (
                f"host:{self.host}\nx-amz-date:{timestamp}\nx-amz-security-token:{' '.join(token.split())}\n"
            )
        else:
            signed = "host;x-amz-date"
            canonical_headers = f"host:{self.host}\nx-amz-date:{timestamp}\n"
        canonical_request = (
            f"POST\n{quote(normalize_url_path(path), safe='/~')}\n\n{canonical_headers}\n{signed}\n"
            f"{hashlib.sha256(data).hexdigest()}"
        )
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{timestamp}\n{day}/{self._scope}\n"
            f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self.signing_key(credentials.secret_key, day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "X-Amz-Date": timestamp,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{day}/{self._scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _dropped(fd: int) -> bool:
    """Whether the idle kept-alive connection on ``fd`` (-1: none) is readable, i.e. not fit for a request."""
    if fd == -1:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Answer:
    """What libcurl hands back for one request: the last response's status line onwards."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = io.BytesIO()

    def header_line(self, line: bytes) -> None:
        text = line.decode("iso-8859-1")
        if text.startswith("HTTP/"):  # a new response (after a 100 Continue): its headers only
            self.headers = {}
            return
        name, colon, value = text.partition(":")
        if colon:
            name, value = name.strip().lower(), value.strip()
            # repeated headers joined as urllib3 (and so botocore) joins them
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value


_CONNECT_FAILED = frozenset(
    {pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_RESOLVE_PROXY}
)
_CLOSED = frozenset(
    {
        pycurl.E_GOT_NOTHING,
        pycurl.E_RECV_ERROR,
        pycurl.E_SEND_ERROR,
        pycurl.E_PARTIAL_FILE,
        pycurl.E_SEND_FAIL_REWIND,  # a reused connection died after the body was sent: not sent again
        pycurl.E_READ_ERROR,  # ... or a resend needing no rewind: the body, read once, is not there again
    }
)
_TLS = frozenset(
    {pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_USE_SSL_FAILED}
    | {getattr(pycurl, name) for name in dir(pycurl) if name.startswith("E_SSL_")}
)


def _network_error(error: pycurl.error, url: str) -> Exception:
    """The exception botocore's ``URLLib3Session.send`` raises for the same failure."""
    code, message = error.args
    if code in _CONNECT_FAILED:
        return EndpointConnectionError(endpoint_url=url, error=error)
    if code == pycurl.E_OPERATION_TIMEDOUT:
        # libcurl's one timeout code; its message names the phase ("Operation timed out after ..." once
        # connected). No timing info tells them apart: a reused connection reports a connect time of 0.
        connecting = str(message).startswith(("Connection timed out", "Resolving timed out"))
        return (ConnectTimeoutError if connecting else ReadTimeoutError)(endpoint_url=url, error=error)
    if code in _TLS:
        return SSLError(endpoint_url=url, error=error)
    if code in _CLOSED:
        return ConnectionClosedError(endpoint_url=url)
    return HTTPClientError(error=error)


def _error_response(status: int, headers: Any, body: bytes) -> dict[str, Any]:
    """The error dict botocore's rest-json parser builds for this response (``ClientError.response``)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    stripped = body.strip()
    if status >= 500 and (not stripped or stripped.startswith(b"<html>")):  # a proxy's or load balancer's
        error: dict[str, Any] = {"Code": str(status), "Message": http.client.responses.get(status, "")}
    else:
        parsed = _json_body(body)
        code: Any = parsed.get("__type", str(status))
        if "x-amzn-errortype" in lowered:
            code = lowered["x-amzn-errortype"]
        elif "code" in parsed or "Code" in parsed:
            code = parsed.get("code", parsed.get("Code", ""))
        if isinstance(code, str):
            code = code.split(":", 1)[0].rsplit("#", 1)[-1]
        error = {"Code": code, "Message": parsed.get("message", parsed.get("Message", ""))}
    # One attempt, as boto3 configured with total_max_attempts=1 reports it (and prints it in str(error)).
    metadata: dict[str, Any] = {
        "HTTPStatusCode": status,
        "HTTPHeaders": lowered,
        "RetryAttempts": 0,
        "MaxAttemptsReached": True,
    }
    if "x-amzn-requestid" in lowered:
        metadata["RequestId"] = lowered["x-amzn-requestid"]
    return {"Error": error, "ResponseMetadata": metadata}


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"message": text}
    return parsed if isinstance(parsed, dict) else {"message": text}
