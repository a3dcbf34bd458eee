"""Calling a function's ``handler`` directly (unit tests, benchmarks): its module loaded as its image
loads it, and a Lambda context to pass it."""

from __future__ import annotations

import importlib.util
import itertools
import time
from pathlib import Path
from types import ModuleType

from ..config import REPO_ROOT

__all__ = ["FakeContext", "load_function"]

_loads = itertools.count()


def load_function(name: str, functions_dir: Path = REPO_ROOT / "lambdas") -> ModuleType:
    """Import ``<functions_dir>/<name>/app.py`` afresh (a module of its own each time): its module-level
    init (config, clients) runs again, as in a new execution environment."""
    spec = importlib.util.spec_from_file_location(
        f"lambda_{name}_{next(_loads)}", functions_dir / name / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeContext:
    """The attributes Powertools reads from a Lambda context. The invocation has 10 s left, or, with
    ``seconds``, that many from now, running down with the clock (a deadline a handler must respect)."""

    aws_request_id = "7f1c0e4a-0000-4000-8000-000000000000"
    function_version = "$LATEST"

    def __init__(
        self,
        function_name: str = "test-function",
        *,
        memory_limit_in_mb: int = 256,
        seconds: float | None = None,
    ) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"2026/12/01/[$LATEST]{function_name}"
        self._ends = None if seconds is None else time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        if self._ends is None:
            return 10_000
        return int((self._ends - time.monotonic()) * 1000)
