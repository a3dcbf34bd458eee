"""API Gateway WebSocket events in the shape of real captures (tests/events/*.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"


def _load(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def connect_event(
    query: dict[str, str] | None,
    *,
    connection_id: str = "BFHPhfCWIAMCKlQ=",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    event = _load("connect")
    event["requestContext"]["connectionId"] = connection_id
    if query is None:  # API Gateway omits both keys when the URL has no query string
        del event["queryStringParameters"], event["multiValueQueryStringParameters"]
    else:
        event["queryStringParameters"] = dict(query)
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


def message_event(
    body: str | dict[str, Any], *, connection_id: str = "BFaT_fALIAMCKug=", route: str = "sendMessage"
) -> dict[str, Any]:
    event = _load("message")
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["routeKey"] = route
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def disconnect_event(
    *, connection_id: str = "BFaT_fALIAMCKug=", status: int = 1001, reason: str = "Going away"
) -> dict[str, Any]:
    event = _load("disconnect")
    event["requestContext"].update(
        connectionId=connection_id, disconnectStatusCode=status, disconnectReason=reason
    )
    return event
