"""Fixtures that start the real local stack (in a thread of the test process) on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from local_stack import Stack
from local_stack.testing import start_stack

from .helpers import EventLog, stack_factory, test_config


@pytest.fixture(scope="package")
def event_log(tmp_path_factory: pytest.TempPathFactory) -> EventLog:
    return EventLog(tmp_path_factory.mktemp("events"))


# Package scope, not session: these stacks run moto in this process, and their TTL reapers would
# otherwise go on deleting expired items from the same in-memory backend that later suites' mock_aws uses.
@pytest.fixture(scope="package")
def test_stack(event_log: EventLog) -> Iterator[Stack]:
    """terraform/ + the test route table ``terraform/full`` over ``functions/``."""
    with start_stack(test_config(event_log.directory, ttl_reaper_interval_s=0.5)) as stack:
        yield stack


@pytest.fixture
def local_stack_factory() -> Iterator[Callable[..., Stack]]:
    """``local_stack_factory(**config_overrides) -> Stack``: stopped at the end of the test."""
    yield from stack_factory()


@pytest.fixture(scope="module")
def local_stack_factory_module() -> Iterator[Callable[..., Stack]]:
    yield from stack_factory()


@pytest.fixture(scope="package")
def chat_stack() -> Iterator[Stack]:
    """The real stack (terraform/ + lambdas/), shared by the stack families: each uses rooms of its own."""
    with start_stack(web_port=0, ttl_reaper_interval_s=30.0) as stack:
        yield stack
