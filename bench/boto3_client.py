"""The management-API client the functions used before shared/management_api.py, kept for comparison:
``boto3.client("apigatewaymanagementapi")`` configured as shared/sender.py configured it (pool sized to the
fan-out, one attempt since ``RetryPolicy`` retries, 2 s / 5 s timeouts, TCP keep-alive)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.config import Config


def boto3_management_client(endpoint_url: str, *, pool_size: int) -> Any:
    import boto3

    config = Config(
        max_pool_connections=pool_size,
        retries={"total_max_attempts": 1},
        connect_timeout=2,
        read_timeout=5,
        tcp_keepalive=True,
    )
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint_url, config=config)


def boto3_factory(pool_size: int) -> Callable[[str], Any]:
    return lambda endpoint_url: boto3_management_client(endpoint_url, pool_size=pool_size)
