"""The management-API client shipped before libcurl, kept as a peer for comparison: SigV4 + urllib3, as
``shared/management_api.py`` was before commit e129c8b (one ``urllib3.HTTPConnectionPool`` of ``pool_size``
kept-alive connections that blocks when all are busy, no retries, 2 s / 5 s timeouts, TCP keep-alive).

Only the transport is this module's: it is the shipped ``ManagementApiClient`` with its ``_send`` (one POST)
done by urllib3, so signing, the path and the error parsing are the shipped ones and a row of this client
against the shipped one differs by the HTTP layer alone. Network errors are mapped from urllib3's as that
client mapped them.
"""

from __future__ import annotations

import socket
from typing import Any

import urllib3
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path
from urllib3.connection import HTTPConnection

from shared import runtime
from shared.management_api import ManagementApiClient


class Urllib3ManagementApiClient(ManagementApiClient):
    """The shipped client (signing, path, errors: ``post_to_connection``) with urllib3 as its transport."""

    def __init__(
        self, endpoint_url: str, *, pool_size: int, connect_timeout: float = 2.0, read_timeout: float = 5.0
    ) -> None:
        super().__init__(
            endpoint_url, pool_size=pool_size, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        socket_options = [*HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
        tls: dict[str, Any] = {}
        if self.endpoint_url.startswith("https:"):
            session = runtime.botocore_session()
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

    def _send(self, path: str, headers: dict[str, str], data: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            response = self._pool.urlopen(
                "POST",
                path,
                body=data,
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
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.data

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
