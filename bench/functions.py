"""What a benchmark feeds a function it calls directly (loaded with ``local_stack.testing.load_function``):
the events the local stack's gateway builds, the tables Terraform defines; and timing of what it calls."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

from bench.env import ROOT, TABLE
from local_stack import events


def create_tables(client: Any) -> None:
    """Every table of terraform/ under its local name (chat_connections, chat_messages, ...)."""
    from local_stack.dynamodb import ensure_table, local_table_names
    from local_stack.terraform import load_model

    model = load_model([ROOT / "terraform"])
    for resource, name in local_table_names(TABLE, model.tables).items():
        ensure_table(client, name, model.tables[resource])


def _connection(connection_id: str) -> events.ConnectionInfo:
    return events.ConnectionInfo(
        connection_id, events.now_ms(), "127.0.0.1", "bench", "127.0.0.1", "dev", "benchapi01"
    )


def message_event(
    body: str | dict[str, Any], *, connection_id: str, route: str = "sendMessage"
) -> dict[str, Any]:
    """A frame's event, as the local stack's gateway builds it."""
    text = body if isinstance(body, str) else json.dumps(body)
    return events.message_event(
        _connection(connection_id),
        route_key=route,
        body=text,
        request_id=events.new_id(),
        message_id=events.new_id(),
        request_ms=events.now_ms(),
    )


def connect_event(query: dict[str, str], *, connection_id: str) -> dict[str, Any]:
    return events.connect_event(
        _connection(connection_id),
        headers=[("Host", "127.0.0.1")],
        query=query.items(),
        request_id=events.new_id(),
        request_ms=events.now_ms(),
        forwarded_port=443,
    )


def disconnect_event(*, connection_id: str) -> dict[str, Any]:
    return events.disconnect_event(
        _connection(connection_id),
        status_code=1001,
        reason="",
        request_id=events.new_id(),
        request_ms=events.now_ms(),
    )


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Powertools Metrics prints one EMF document per invocation; keep it out of the tables."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class Timed:
    """Wraps a bound method on an instance to record its wall time and last result (instrumentation only:
    the wrapped code runs unchanged)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.calls: list[float] = []
        self.cpu: list[float] = []
        self.last: Any = None
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                self.last = original(*args, **kwargs)
                return self.last
            finally:
                self.calls.append(time.perf_counter() - start)
                self.cpu.append(time.process_time() - start_cpu)

        setattr(owner, name, wrapper)

    def reset(self) -> None:
        self.calls.clear()
        self.cpu.clear()
        self.last = None
