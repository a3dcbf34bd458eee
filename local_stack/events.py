"""API Gateway WebSocket events, ids, route selection and gateway frames: pure functions, no I/O.

Shapes follow real captured events (Powertools' ``tests/events/apiGatewayWebSocketApi*.json`` and
docs/aws-behaviour.md): ``queryStringParameters`` only when the URL has a query string, ``multiValueHeaders``
beside ``headers``, ``requestId == extendedRequestId``, epoch-millisecond times, CLF ``requestTime``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HOP_BY_HOP",
    "ConnectionInfo",
    "RouteSelector",
    "clf_time",
    "connect_event",
    "disconnect_event",
    "disconnect_reason",
    "error_frame",
    "iso8601_ms",
    "message_event",
    "new_api_id",
    "new_id",
    "trace_id",
]

_ID_ALPHABET_BAD = frozenset("+/")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Headers API Gateway does not pass to the $connect integration (hop-by-hop / upgrade machinery).
HOP_BY_HOP = frozenset(
    {"connection", "upgrade", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
)


def new_id() -> str:
    """A 16-character base64-like id ending in ``=`` (connection, request and message ids)."""
    while True:
        value = base64.b64encode(os.urandom(11)).decode("ascii")
        if not _ID_ALPHABET_BAD.intersection(value):
            return value


def new_api_id() -> str:
    """A 10-character lower-case API id, like ``fjnq7njcv2``."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(10))


def now_ms() -> int:
    return int(time.time() * 1000)


def clf_time(epoch_ms: int) -> str:
    """``11/Nov/2024:11:35:24 +0000`` (locale-independent)."""
    t = time.gmtime(epoch_ms / 1000)
    day = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}"
    return f"{day}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def iso8601_ms(epoch_ms: int) -> str:
    """``2024-11-11T11:35:24.553Z``: the @connections GET timestamp format."""
    t = time.gmtime(epoch_ms / 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{epoch_ms % 1000:03d}Z"


def trace_id(epoch_ms: int) -> str:
    return f"Root=1-{epoch_ms // 1000:08x}-{secrets.token_hex(12)}"


@dataclass
class ConnectionInfo:
    """What the gateway knows about one connection; the same values go into every event of it."""

    connection_id: str
    connected_at: int  # epoch ms
    source_ip: str
    user_agent: str | None
    domain_name: str
    stage: str
    api_id: str
    last_active_at: int = 0

    def identity(self) -> dict[str, str]:
        identity = {"sourceIp": self.source_ip}
        if self.user_agent is not None:
            identity["userAgent"] = self.user_agent
        return identity


def _request_context(
    conn: ConnectionInfo, *, route_key: str, event_type: str, request_id: str, request_ms: int
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": clf_time(request_ms),
        "messageDirection": "IN",
        "stage": conn.stage,
        "connectedAt": conn.connected_at,
        "requestTimeEpoch": request_ms,
        "identity": conn.identity(),
        "requestId": request_id,
        "domainName": conn.domain_name,
        "connectionId": conn.connection_id,
        "apiId": conn.api_id,
    }
    return ctx


def _query_parameters(query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in query:
        single[key] = value  # the last value wins, as API Gateway does
        multi.setdefault(key, []).append(value)
    if not multi:
        return {}
    return {"queryStringParameters": single, "multiValueQueryStringParameters": multi}


def connect_event(
    conn: ConnectionInfo,
    *,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    request_id: str,
    request_ms: int,
    forwarded_port: int,
    proto: str = "http",
) -> dict[str, Any]:
    """The ``$connect`` event: client headers (hop-by-hop removed) plus what API Gateway's edge adds."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        if name.lower() in HOP_BY_HOP:
            continue
        single[name] = value if name not in single else f"{single[name]},{value}"
        multi.setdefault(name, []).append(value)
    added = {
        "X-Amzn-Trace-Id": trace_id(request_ms),
        "X-Forwarded-For": conn.source_ip,
        "X-Forwarded-Port": str(forwarded_port),
        "X-Forwarded-Proto": proto,
    }
    for name, value in added.items():
        single[name] = value
        multi[name] = [value]
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    event.update(_query_parameters(query))
    event["requestContext"] = _request_context(
        conn, route_key="$connect", event_type="CONNECT", request_id=request_id, request_ms=request_ms
    )
    event["isBase64Encoded"] = False
    return event


def message_event(
    conn: ConnectionInfo, *, route_key: str, body: str, request_id: str, message_id: str, request_ms: int
) -> dict[str, Any]:
    ctx = _request_context(
        conn, route_key=route_key, event_type="MESSAGE", request_id=request_id, request_ms=request_ms
    )
    ordered = {"routeKey": ctx.pop("routeKey"), "messageId": message_id}
    ordered.update(ctx)
    return {"requestContext": ordered, "body": body, "isBase64Encoded": False}


_CLOSE_REASONS = {
    1000: "Normal closure",
    1001: "Going away",
    1002: "Protocol error",
    1003: "Unsupported data",
    1005: "Client-side close frame status not set",
    1006: "Connection was closed abnormally",
    1007: "Invalid frame payload data",
    1008: "Policy violation",
    1009: "Message too big",
    1011: "Internal server error",
}


def disconnect_reason(code: int, reason: str = "") -> str:
    return reason or _CLOSE_REASONS.get(code, "")


def disconnect_event(
    conn: ConnectionInfo, *, status_code: int, reason: str, request_id: str, request_ms: int
) -> dict[str, Any]:
    fixed = {"Host": conn.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    ctx = _request_context(
        conn, route_key="$disconnect", event_type="DISCONNECT", request_id=request_id, request_ms=request_ms
    )
    ordered: dict[str, Any] = {"routeKey": ctx.pop("routeKey"), "disconnectStatusCode": status_code}
    ordered["eventType"] = ctx.pop("eventType")
    ordered["extendedRequestId"] = ctx.pop("extendedRequestId")
    ordered["requestTime"] = ctx.pop("requestTime")
    ordered["messageDirection"] = ctx.pop("messageDirection")
    ordered["disconnectReason"] = disconnect_reason(status_code, reason)
    ordered.update(ctx)
    return {
        "headers": fixed,
        "multiValueHeaders": {k: [v] for k, v in fixed.items()},
        "requestContext": ordered,
        "isBase64Encoded": False,
    }


def error_frame(message: str, connection_id: str, request_id: str) -> str:
    """API Gateway's own error frame, with its exact (inconsistent) spacing."""
    return f'{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}'


_RESERVED_ROUTES = frozenset({"$connect", "$disconnect", "$default"})


def _expression_path(expression: str) -> list[str] | None:
    prefix = "$request.body."
    if not expression.startswith(prefix):
        return None
    path = expression[len(prefix) :].split(".")
    return path if all(path) else None


class RouteSelector:
    """Route selection of one API; the expression is parsed and the route keys collected once."""

    def __init__(self, expression: str, routes: Iterable[str]) -> None:
        route_set = set(routes)
        self._path = _expression_path(expression)
        self._selectable = frozenset(route_set - _RESERVED_ROUTES)
        self._fallback = "$default" if "$default" in route_set else None

    def select(self, body: str) -> str | None:
        """The route key a frame goes to: the key the expression yields when it names a route, else
        ``$default`` when that route exists, else ``None`` (the gateway answers Forbidden).

        Non-JSON frames, frames where the expression can't be evaluated and unmatched keys all fall
        through to ``$default``; ``$connect``/``$disconnect``/``$default`` are never chosen by the expression.
        """
        key: Any = None
        if self._path is not None:
            try:
                key = json.loads(body)
            except ValueError:
                key = None
            for part in self._path:
                key = key.get(part) if isinstance(key, dict) else None
        if isinstance(key, str) and key in self._selectable:
            return key
        return self._fallback
