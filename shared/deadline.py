"""A per-invocation deadline that every AWS call of a function must fit in.

Lambda stops a function at its timeout; API Gateway has given up on the route by then. A write that lands
after that point does harm (a ``$connect`` record for a connection that never opened). So:

- a handler runs inside :func:`invocation` (or the :func:`aws_deadline` decorator), which sets the deadline
  to ``context.get_remaining_time_in_millis()`` minus a margin kept free for the answer;
- a botocore client passed through :func:`guard` refuses to *start* an HTTP attempt, retries included, whose
  worst case (``connect_timeout + read_timeout`` of the client's config) would end past the deadline: it
  raises :class:`DeadlineExceeded` instead, which botocore does not retry. So a guarded call always returns
  (or fails) before the deadline, and its client's timeouts are what bound each attempt;
- :func:`reserve` moves the deadline earlier for a block, keeping time for what must follow it (e.g. the
  delete that undoes a write whose answer never came); :func:`suspended` lifts it for a call that must be
  tried even late (that delete, when the write itself answered too late).

Outside an invocation (module init, scripts) there is no deadline and a guarded client behaves as usual.
Lambda runs one invocation at a time per execution environment, so the deadline is process-wide: threads
a handler starts (a fan-out pool) see it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.middleware_factory import lambda_handler_decorator

from shared.config import DeadlineConfig

__all__ = [
    "Deadline",
    "DeadlineExceeded",
    "attempt_seconds",
    "aws_deadline",
    "current",
    "guard",
    "invocation",
    "remaining",
    "reserve",
    "suspended",
]

Client = TypeVar("Client")

# The deadline's clock (tests move it); monotonic, so a wall-clock step cannot stretch an invocation.
clock: Callable[[], float] = time.monotonic


class DeadlineExceeded(Exception):
    """An AWS call could not start: its worst case would end after the invocation's deadline."""


@dataclass(frozen=True)
class Deadline:
    """A point in :data:`clock` time."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(clock() + seconds)

    def remaining(self) -> float:
        return self.at - clock()


_current: Deadline | None = None


def current() -> Deadline | None:
    return _current


def remaining() -> float | None:
    """Seconds left before the current deadline, or None outside an invocation."""
    return None if _current is None else _current.remaining()


@contextmanager
def _set(deadline: Deadline | None) -> Iterator[Deadline | None]:
    global _current
    previous, _current = _current, deadline
    try:
        yield deadline
    finally:
        _current = previous


def invocation(context: Any, *, margin_seconds: float | None = None) -> Any:
    """Context manager: the deadline of this invocation, ``margin_seconds`` before Lambda's own."""
    if margin_seconds is None:
        margin_seconds = DeadlineConfig.from_env().margin_seconds
    left = context.get_remaining_time_in_millis() / 1000
    return _set(Deadline.after(left - margin_seconds))


@contextmanager
def reserve(seconds: float) -> Iterator[Deadline | None]:
    """Within the block, the deadline is ``seconds`` earlier (no-op outside an invocation)."""
    if _current is None:
        yield None
        return
    with _set(Deadline(_current.at - seconds)) as deadline:
        yield deadline


def suspended() -> Any:
    """Context manager: no deadline within the block, for calls whose late arrival does no harm (deleting a
    record that must not exist) and that matter more than answering in time."""
    return _set(None)


@lambda_handler_decorator
def aws_deadline(
    handler: Callable[..., Any], event: Any, context: Any, margin_seconds: float | None = None
) -> Any:
    """Powertools middleware: run the handler inside :func:`invocation`."""
    with invocation(context, margin_seconds=margin_seconds):
        return handler(event, context)


def attempt_seconds(client: Any) -> float:
    """The longest one HTTP attempt of ``client`` can take: connecting, then waiting for the answer."""
    config = client.meta.config
    return float(config.connect_timeout) + float(config.read_timeout)


def guard(client: Client) -> Client:
    """Make every HTTP attempt of a botocore client fit in the current deadline; returns the client."""
    budget = attempt_seconds(client)

    def before_send(request: Any, **kwargs: Any) -> None:
        left = remaining()
        if left is not None and left < budget:
            raise DeadlineExceeded(
                f"{kwargs.get('event_name', 'an AWS call')}: {max(left, 0):.2f} s left before the deadline, "
                f"an attempt may take {budget:.2f} s"
            )

    # First, so no other before-send handler (a stub, a test's fault injection) answers in its place.
    client.meta.events.register_first("before-send", before_send)  # type: ignore[attr-defined]
    return client
