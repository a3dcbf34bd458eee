"""Prototype of a proposed change (not used by the functions): a management-API client that signs with
botocore's SigV4 and sends with urllib3, skipping botocore's per-call machinery (parameter validation,
event hooks, endpoint rules, serialisation, response parsing, retry handler).

It speaks the same HTTP to AWS as ``boto3.client("apigatewaymanagementapi").post_to_connection``: ``POST
{endpoint}/@connections/{id}`` with the raw bytes, SigV4 for service ``execute-api``, and raises
``botocore.exceptions.ClientError`` shaped as boto3's (``Error.Code`` from ``x-amzn-ErrorType``,
``ResponseMetadata.HTTPStatusCode``), so ``shared.sender.classify`` treats its errors exactly alike.
Network failures raise a ``BotoCoreError`` subclass (``HTTPClientError``), retried like boto3's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, HTTPClientError


class LeanManagementClient:
    def __init__(
        self,
        endpoint_url: str,
        *,
        pool_size: int,
        region: str | None = None,
        credentials: Any = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        import boto3

        session = boto3.session.Session()
        self._endpoint = endpoint_url.rstrip("/")
        self._path = urlsplit(self._endpoint).path
        self._signer = SigV4Auth(
            credentials or session.get_credentials(), "execute-api", region or session.region_name
        )
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        url = f"{self._endpoint}/@connections/{quote(ConnectionId, safe='')}"
        request = AWSRequest(method="POST", url=url, data=Data)
        self._signer.add_auth(request)
        try:
            response = self._http.request("POST", url, body=Data, headers=dict(request.headers.items()))
        except urllib3.exceptions.HTTPError as error:
            raise HTTPClientError(error=error) from error
        if response.status == 200:
            return {"ResponseMetadata": {"HTTPStatusCode": 200}}
        code = (response.headers.get("x-amzn-ErrorType") or str(response.status)).split(":")[0]
        raise ClientError(
            {
                "Error": {"Code": code, "Message": response.data.decode("utf-8", "replace")[:200]},
                "ResponseMetadata": {"HTTPStatusCode": response.status},
            },
            "PostToConnection",
        )


def lean_factory(pool_size: int) -> Any:
    return lambda endpoint_url: LeanManagementClient(endpoint_url, pool_size=pool_size)
