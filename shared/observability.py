"""Powertools Logger, Tracer and Metrics shared by every function.

The service name, metrics namespace and log level come from ``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE`` and ``POWERTOOLS_LOG_LEVEL`` (set by Terraform). Events are never logged
whole: a ``$connect`` event carries the token in its query string.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["CORRELATION_ID_PATH", "MetricUnit", "count", "logger", "metrics", "tracer"]

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ChatBackend")

# requestContext.requestId: one id per WebSocket event, as API Gateway's own logs show it.
CORRELATION_ID_PATH = correlation_paths.API_GATEWAY_REST


def count(name: str, value: int = 1) -> None:
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
