"""What a benchmark feeds a function it calls directly (loaded with ``local_stack.testing.load_function``):
the events the local stack's gateway builds, the tables Terraform defines; and timing of what it calls."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from bench.env import MEMBERSHIPS_TABLE, MESSAGES_TABLE, ROOT, TABLE
from local_stack.cli import generate_event
from local_stack.config import StackConfig
from local_stack.testing import SECRET


@functools.cache
def terraform() -> Any:
    """terraform/ as the local stack reads it (``local_stack.terraform.load_model``)."""
    from local_stack.terraform import load_model

    return load_model([ROOT / "terraform"])


@functools.cache
def routes() -> dict[str, str]:
    """Each function's route key (none for a function without a route: fanout, publish)."""
    return {name: spec.route_key for name, spec in terraform().functions.items() if spec.route_key}


def create_tables(client: Any) -> None:
    """Every table of terraform/ under its local name (chat_connections, chat_messages, ...)."""
    from local_stack.dynamodb import ensure_table, local_table_names

    tables = terraform().tables
    for resource, name in local_table_names(TABLE, tables).items():
        ensure_table(client, name, tables[resource])


@contextlib.contextmanager
def moto_tables(callback_url: str) -> Iterator[Any]:
    """moto's DynamoDB with terraform/'s tables, the functions' variables naming them; its client."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(client)
        os.environ.update(
            DYNAMO_TABLE_NAME_CHAT_CONNECTIONS=TABLE,
            DYNAMO_TABLE_NAME_CHAT_MESSAGES=MESSAGES_TABLE,
            DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS=MEMBERSHIPS_TABLE,
            RATE_LIMIT_PER_SECOND="0",  # one sender posting repeatedly: not what is measured
            WEBSOCKET_CALLBACK_URL=callback_url,
        )
        yield client


def gateway_event(
    route: str, *, connection_id: str, body: str | dict[str, Any] | None = None, secret: str = SECRET
) -> dict[str, Any]:
    """The event the local stack's gateway sends ``route`` (a route key or a function name); a connect
    event carries alice's token for room "cold", signed with ``secret`` (the stack's default)."""
    text = body if body is None or isinstance(body, str) else json.dumps(body)
    return generate_event(
        route,
        route_keys=routes(),
        config=StackConfig(jwt_secret=secret),
        room="cold",
        body=text,
        connection_id=connection_id,
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
