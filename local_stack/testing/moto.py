"""``python -m local_stack.testing moto``: moto's server alone (the stack's embedded one, made atomic), in a
child of its own so its CPU and GIL are not the caller's; it prints its ready line and stops when its
standard input closes. :class:`MotoProcess` starts it and waits for that line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from ..config import REPO_ROOT
from .process import read_ready_line, stop_process

__all__ = ["MotoProcess", "main"]


class MotoProcess:
    """``with MotoProcess() as moto:`` moto's server in a child process on a free 127.0.0.1 port;
    ``moto.endpoint`` (for ``DYNAMODB_ENDPOINT``), ``moto.pid``."""

    def __init__(self, *, start_timeout_s: float = 60.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.endpoint = ""
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def __enter__(self) -> MotoProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local_stack.testing", "moto"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            ready = read_ready_line(self.proc, self.start_timeout_s, what="moto's server")
        except BaseException:
            self.__exit__()
            raise
        self.endpoint = str(ready["endpoint"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def main(argv: list[str] | None = None) -> None:
    from ..dynamodb import EmbeddedDynamoDB

    if argv:
        sys.exit("usage: python -m local_stack.testing moto")
    server = EmbeddedDynamoDB()
    endpoint = server.start()
    ready: dict[str, Any] = {"event": "ready", "endpoint": endpoint}
    print(json.dumps(ready), flush=True)
    try:
        sys.stdin.read()  # bounded: the parent closes stdin (or dies) and the server stops
    finally:
        server.stop()
