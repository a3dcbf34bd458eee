"""Helpers for the integration tests (paths, configs, WebSocket shortcuts, the recorded-event log)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import websockets.sync.client
from botocore.config import Config
from websockets.exceptions import InvalidStatus

from local_stack import Stack, StackConfig, StackThread
from local_stack import testing as kit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FUNCTIONS = HERE / "functions"
TF_FULL = (REPO / "terraform", HERE / "terraform" / "full")
TF_NO_DEFAULT = (REPO / "terraform", HERE / "terraform" / "no_default")


def test_config(event_log_dir: Path | None = None, **overrides: Any) -> StackConfig:
    """The kit's test config over the test route table and functions (not a test: a helper)."""
    base: dict[str, Any] = dict(
        web_port=0,
        terraform_dirs=TF_FULL,
        functions_dir=FUNCTIONS,
        min_workers=0,
        max_workers=3,
        ttl_reaper_interval_s=30.0,
        tf_vars={"event_log_dir": str(event_log_dir or "")},
    )
    return kit.test_config(**{**base, **overrides})


test_config.__test__ = False  # type: ignore[attr-defined]


class EventLog:
    """Reads what the recording test functions wrote for a connection."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def events(self, connection_id: str) -> list[dict[str, Any]]:
        path = self.directory / f"{connection_id}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, connection_id: str, route_key: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(connection_id):
                if event["requestContext"]["routeKey"] == route_key:
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {route_key} event for {connection_id} within {timeout}s")


def start_failure(config: StackConfig) -> BaseException | None:
    """Why the stack failed to start (the test fails if it starts)."""
    thread = StackThread(config)
    try:
        with pytest.raises(RuntimeError, match="failed to start") as failure:
            thread.__enter__()
    finally:
        thread.stop()
    return failure.value.__cause__


def stack_factory() -> Iterator[Callable[..., Stack]]:
    """The generator behind the ``local_stack_factory`` fixtures: start stacks, stop them afterwards."""
    with contextlib.ExitStack() as started:
        yield lambda **overrides: started.enter_context(kit.start_stack(test_config(**overrides)))


def aws_client(
    service: str, endpoint_url: str, *, max_attempts: int | None = None, key: str = "x", secret: str = "x"
) -> Any:
    """A boto3 client for a local endpoint (dummy credentials unless given, us-east-1)."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": max_attempts}) if max_attempts else None,
    )


def connect(url: str, **kwargs: Any) -> websockets.sync.client.ClientConnection:
    kwargs.setdefault("open_timeout", 15)
    kwargs.setdefault("close_timeout", 5)
    return websockets.sync.client.connect(url, **kwargs)


def request(
    ws: websockets.sync.client.ClientConnection, frame: dict[str, Any] | str, timeout: float = 15
) -> Any:
    ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    return ws.recv(timeout=timeout)


def handshake_status(url: str, **kwargs: Any) -> tuple[int, bytes]:
    """The status and body of a refused handshake (fails the test if the connection opens)."""
    with pytest.raises(InvalidStatus) as info:
        connect(url, **kwargs)
    return info.value.response.status_code, info.value.response.body or b""


def connection_id(ws: websockets.sync.client.ClientConnection) -> str:
    reply = json.loads(request(ws, {"action": "echo"}))
    return str(reply["event"]["requestContext"]["connectionId"])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An ``async def`` test run with ``asyncio.run`` (its fixtures are those of its own signature)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
