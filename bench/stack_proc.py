"""The local stack in a child process (so its CPU and GIL are not the benchmark clients'), on free ports.

Run alone: ``python -m bench.stack_proc --workers 4`` prints one JSON line (ws_url, callback_url,
jwt_secret, dynamodb) when ready, and stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from bench.env import ROOT
from bench.proc import first_line, stop_process


async def _serve(workers: int, dynamodb_endpoint: str | None) -> None:
    from local_stack.config import StackConfig
    from local_stack.stack import run_stack

    config = StackConfig(
        ws_port=0,
        web_port=None,
        echo_logs=False,
        reload=False,
        max_workers=workers,
        min_workers=workers,  # every execution environment warm before measuring
        ttl_reaper_interval_s=0,
        dynamodb_endpoint=dynamodb_endpoint,
    )
    async with run_stack(config) as stack:
        info = {
            "ws_url": stack.ws_url,
            "callback_url": stack.callback_url,
            "jwt_secret": config.jwt_secret,
            "dynamodb": stack.dynamodb_endpoint,
        }
        print(json.dumps(info), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class StackProcess:
    """``with StackProcess(workers=4) as stack:``; ``stack.info`` holds what the child printed."""

    def __init__(
        self, *, workers: int = 4, dynamodb_endpoint: str | None = None, start_timeout_s: float = 120.0
    ) -> None:
        self.workers = workers
        self.dynamodb_endpoint = dynamodb_endpoint
        self.start_timeout_s = start_timeout_s
        self.info: dict[str, Any] = {}
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> StackProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.stack_proc", "--workers", str(self.workers)]
            + (["--dynamodb-endpoint", self.dynamodb_endpoint] if self.dynamodb_endpoint else []),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = first_line(self.proc, self.start_timeout_s)
        if not line.startswith("{"):
            self.__exit__()
            raise RuntimeError(f"the local stack did not start: {line!r}")
        self.info = json.loads(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, grace=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stack_proc", description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dynamodb-endpoint", default=None, help="default: the stack's embedded moto")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.workers, args.dynamodb_endpoint))


class MotoProcess:
    """moto's DynamoDB server in its own process (``moto_server``), for ``--dynamodb process``."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def __enter__(self) -> MotoProcess:
        import socket
        import time
        import urllib.request
        from pathlib import Path

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("moto_server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def local_stack(workers: int, dynamodb: str) -> Iterator[StackProcess]:
    """The stack with its embedded moto (``dynamodb="embedded"``, as ``make dev``) or with moto in a
    process of its own (``"process"``: the stack's own DYNAMODB_ENDPOINT option)."""
    if dynamodb == "embedded":
        with StackProcess(workers=workers) as stack:
            yield stack
    elif dynamodb == "process":
        with MotoProcess() as moto, StackProcess(workers=workers, dynamodb_endpoint=moto.endpoint) as stack:
            yield stack
    else:
        raise ValueError(f"dynamodb must be embedded or process, got {dynamodb!r}")


if __name__ == "__main__":
    main()
