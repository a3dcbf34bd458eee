"""The API Gateway management API's ``PostToConnection``, signed with SigV4 and sent with urllib3.

Why not ``boto3.client("apigatewaymanagementapi")``: fan-out is CPU-bound (every post holds the GIL while
it builds, signs and parses), and boto3 spends 0.68 ms of CPU per post against 0.24 ms for this client,
an unsigned urllib3 POST 0.27 ms (``python -m bench post``, bench/README.md; 0.72 vs 0.25 ms inside a
1,000-recipient fan-out): parameter validation, event hooks, endpoint rules, serialisation, response
parsing and the retry handler all run per call, and botocore's signer derives its key with four HMACs
per request where this one derives it once a day. This client keeps only what reaches the wire, so AWS
sees the same request: ``POST {endpoint}/@connections/{id}`` with the raw bytes, the id percent-encoded
as botocore encodes it, SigV4 for service ``execute-api`` signed exactly as botocore's ``SigV4Auth``
signs it (tests compare the headers), botocore's credential chain. It raises what boto3 raises, so
``shared.sender.classify`` cannot tell them apart:

- a non-2xx answer: ``botocore.exceptions.ClientError`` for operation ``PostToConnection``, its response
  parsed as botocore's rest-json parser does (``Error.Code`` from ``x-amzn-ErrorType``, else the body's
  ``code``/``__type``, else the status; ``ResponseMetadata.HTTPStatusCode`` and lower-cased
  ``HTTPHeaders``). Only the typed subclasses (``client.exceptions.GoneException``) are not raised: nothing
  here catches them, and loading the service model to build them would cost the cold start what boto3 does.
- a network failure or timeout: the ``BotoCoreError`` subclass botocore's HTTP layer raises
  (``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``, ``ConnectionClosedError``...).

Backpressure: one connection pool of ``pool_size`` kept-alive connections that blocks (never opens an extra
connection) when all are busy; no retries here (``shared.sender.RetryPolicy`` retries).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.auth
import botocore.session
import urllib3
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
from urllib3.connection import HTTPConnection

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
        socket_options = [*HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
        tls: dict[str, Any] = {}
        if parts.scheme == "https":
            tls = {"ca_certs": session.get_config_variable("ca_bundle") or get_cert_path(True)}
        self._pool = urllib3.connection_from_url(
            self.endpoint_url,
            maxsize=pool_size,
            block=True,  # a busy pool makes callers wait: at most pool_size connections, all reused
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            socket_options=socket_options,
            **tls,
        )

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        if isinstance(Data, str):  # boto3 accepts text for a blob too
            Data = Data.encode("utf-8")
        path = f"{self._path}/@connections/{percent_encode(ConnectionId)}"
        if self._credentials is None:
            raise NoCredentialsError()
        headers = self._signer.headers(self._credentials.get_frozen_credentials(), path, Data)
        try:
            response = self._pool.urlopen(
                "POST",
                path,
                body=Data,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as error:
            raise _network_error(error, self._origin + path) from error
        except OSError as error:  # e.g. socket.gaierror
            raise EndpointConnectionError(endpoint_url=self._origin + path, error=error) from error
        if not 200 <= response.status < 300:
            raise ClientError(_error_response(response.status, response.headers, response.data), OPERATION)

    def close(self) -> None:
        self._pool.close()


class _SigV4:
    """botocore's ``SigV4Auth.add_auth`` for this one request shape (POST, no query, headers host, x-amz-date
    and x-amz-security-token, payload hashed), with the signing key derived once per day and secret key
    instead of with four HMACs per request; the same signature, byte for byte (tests compare them).
    Per post that is 1 HMAC + 2 SHA-256 instead of botocore's AWSRequest, header maps and 5 HMACs."""

    def __init__(self, region: str, host: str) -> None:
        self._scope = f"{region}/{SERVICE}/aws4_request"
        self._host = host
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
                f"host:{self._host}\nx-amz-date:{timestamp}\nx-amz-security-token:{' '.join(token.split())}\n"
            )
        else:
            signed = "host;x-amz-date"
            canonical_headers = f"host:{self._host}\nx-amz-date:{timestamp}\n"
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


def _network_error(error: urllib3.exceptions.HTTPError, url: str) -> Exception:
    """The exception botocore's ``URLLib3Session.send`` raises for the same urllib3 error."""
    errors = urllib3.exceptions
    if isinstance(error, errors.SSLError):
        return SSLError(endpoint_url=url, error=error)
    if isinstance(error, errors.NewConnectionError):  # a ConnectTimeoutError subclass: test it first
        return EndpointConnectionError(endpoint_url=url, error=error)
    if isinstance(error, errors.ConnectTimeoutError):
        return ConnectTimeoutError(endpoint_url=url, error=error)
    if isinstance(error, errors.ReadTimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=error)
    if isinstance(error, errors.ProtocolError):
        return ConnectionClosedError(endpoint_url=url, error=error)
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
