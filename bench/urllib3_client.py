"""The management-API client shipped before libcurl, kept as a peer for comparison: SigV4 + urllib3, as
``shared/management_api.py`` was before commit e129c8b (one ``urllib3.HTTPConnectionPool`` of ``pool_size``
kept-alive connections that blocks when all are busy, no retries, 2 s / 5 s timeouts, TCP keep-alive).

Only the transport is this module's: the SigV4 signer and the error parsing are the shipped ones
(``shared.management_api``), unchanged by the move to libcurl, so a row of this client against the shipped
one differs by the HTTP layer alone. Errors are mapped from urllib3's as that client mapped them.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

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
from botocore.utils import percent_encode
from urllib3.connection import HTTPConnection

from shared import runtime
from shared.management_api import OPERATION, _error_response, _SigV4, region_of


class Urllib3ManagementApiClient:
    """``post_to_connection`` over urllib3 (thread-safe), with the shipped client's signing and errors."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        pool_size: int,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        session: botocore.session.Session | None = None,
    ) -> None:
        session = session or runtime.botocore_session()
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region_of(endpoint_url) or session.get_config_variable("region")
        if not self.region:
            raise NoRegionError()
        self._credentials = session.get_credentials()
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
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            socket_options=socket_options,
            **tls,
        )

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        if isinstance(Data, str):
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
