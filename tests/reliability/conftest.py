"""Reliability families (issue 7): fixtures shared by the families and the per-family summary lines."""

from __future__ import annotations

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
from tests.unit.conftest import dynamodb, function_env, management_api

__all__ = ["Captured", "captured", "dynamodb", "function_env", "management_api"]


class Captured:
    """What the functions wrote: Powertools JSON log lines and EMF metric blobs (both on stdout), plus every
    standard-library log record (botocore, urllib3, ...) at the level the test chose."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self._capsys = capsys
        self._caplog = caplog
        self._text: list[str] = []

    def _drain(self) -> None:
        out = self._capsys.readouterr()
        self._text.append(out.out)
        self._text.append(out.err)

    def lines(self) -> list[str]:
        """Every output line and every log record's formatted message, from every logger."""
        self._drain()
        text = [line for chunk in self._text for line in chunk.splitlines() if line.strip()]
        for record in self._caplog.records:
            text.append(f"{record.name} {record.levelname} {record.getMessage()} {record.__dict__!r}")
        return text

    def json_lines(self) -> list[dict[str, Any]]:
        objects = []
        for line in self.lines():
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
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
            if not isinstance(aws, dict):
                continue
            for directive in aws.get("CloudWatchMetrics", []):
                for metric in directive.get("Metrics", []):
                    value = blob.get(metric["Name"])
                    values = value if isinstance(value, list) else [value]
                    totals[metric["Name"]] += int(sum(v for v in values if isinstance(v, int | float)))
        return totals

    def clear(self) -> None:
        self._drain()
        self._text.clear()
        self._caplog.clear()


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    """Point the shared Powertools logger's handlers (bound to the stdout of import time) at capsys."""
    handlers = [
        h
        for h in {
            powertools_logger.registered_handler,
            *logging.getLogger(powertools_logger.service).handlers,
        }
        if isinstance(h, logging.StreamHandler)
    ]
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
    stack = StackProcess(log_path=tmp_path_factory.mktemp("local-stack") / "stack.log").start()
    yield stack
    stack.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary.lines()
    if lines:
        terminalreporter.section("reliability summary")
        for line in lines:
            terminalreporter.write_line(line)
