"""Loading a function's handler module the way its image does (module ``app``, cold start included)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from bench.env import LAMBDAS

_counter = itertools.count()


def load_function(name: str) -> ModuleType:
    """Import ``lambdas/<name>/app.py`` afresh: its module-level init (config, clients) runs again."""
    path = LAMBDAS / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"bench_lambda_{name}_{next(_counter)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
