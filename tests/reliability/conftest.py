"""Reliability families (issue 7): fixtures shared by the families and the per-family summary lines."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.testing import StackProcess
from shared.observability import logger as powertools_logger
from tests.reliability import summary
from tests.unit.conftest import connected, dynamodb, function_env, management_api

__all__ = ["Captured", "captured", "connected", "dynamodb", "function_env", "management_api"]


class Captured:
    """What the functions wrote: Powertools JSON log lines and EMF metric blobs (both on stdout), and every
    standard-library log record (botocore, urllib3, ...) at the level the test chose."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self._capsys = capsys
        self._caplog = caplog
        self._text: list[str] = []

    def lines(self) -> list[str]:
        """Every output line and every log record's formatted message, from every logger."""
        self._text.extend(self._capsys.readouterr())
        text = [line for chunk in self._text for line in chunk.splitlines() if line.strip()]
        records = self._caplog.records
        return text + [f"{r.name} {r.levelname} {r.getMessage()} {r.__dict__!r}" for r in records]

    def json_lines(self) -> list[dict[str, Any]]:
        objects = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                if line.startswith("{") and isinstance(value := json.loads(line), dict):
                    objects.append(value)
        return objects

    def logs(self) -> list[dict[str, Any]]:
        """Powertools log lines (JSON objects with a ``level``)."""
        return [o for o in self.json_lines() if "level" in o and "_aws" not in o]

    def metrics(self) -> Counter[str]:
        """Sum of every EMF metric value flushed so far, by metric name."""
        totals: Counter[str] = Counter()
        for blob in self.json_lines():
            aws = blob.get("_aws")
            directives = aws.get("CloudWatchMetrics", []) if isinstance(aws, dict) else []
            for metric in (m for directive in directives for m in directive.get("Metrics", [])):
                value = blob.get(metric["Name"])
                values = value if isinstance(value, list) else [value]
                totals[metric["Name"]] += int(sum(v for v in values if isinstance(v, int | float)))
        return totals


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    """Point the shared Powertools logger's handlers (bound to the stdout of import time) at capsys."""
    every = {powertools_logger.registered_handler, *logging.getLogger(powertools_logger.service).handlers}
    handlers = [h for h in every if isinstance(h, logging.StreamHandler)]
    assert handlers
    # capsys swaps sys.stdout only once the test runs, so write to whatever sys.stdout is at each line.
    # Plain assignment, not setStream(): that flushes the old stream, which capsys may have closed already.
    previous = [h.stream for h in handlers]
    for h in handlers:
        h.stream = _CurrentStdout()
    caplog.set_level(logging.INFO)
    try:
        yield Captured(capsys, caplog)
    finally:
        for h, stream in zip(handlers, previous, strict=True):
            h.stream = stream


@pytest.fixture(scope="session")
def stack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """The real local stack (terraform/ + lambdas/) as its own process, shared by the stack-level families."""
    with StackProcess(log_path=tmp_path_factory.mktemp("local-stack") / "stack.log") as stack:
        yield stack


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if lines := summary.lines():
        terminalreporter.section("reliability summary")
        for line in lines:
            terminalreporter.write_line(line)
