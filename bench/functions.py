"""Loading a function's handler module the way its image does (module ``app``, cold start included)."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from typing import Any

from tests.support.functions import load_function

__all__ = ["load_function", "quiet_stdout"]


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
