"""run_stack's parts: a part that fails to start tears down exactly the parts started before it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from local_stack import PortInUseError
from local_stack import runtime as runtime_module
from local_stack import stack as stack_module
from local_stack.dynamodb import EmbeddedDynamoDB

from .helpers import start_failure, test_config

pytestmark = pytest.mark.timeout(60)


class Opened:
    """Every port and worker process the stack opens, recorded as it opens them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ports: list[int] = []
        self.processes: list[asyncio.subprocess.Process] = []
        real_listening, real_bind = runtime_module._listening_socket, stack_module._bind
        real_exec, real_start = asyncio.create_subprocess_exec, EmbeddedDynamoDB.start

        def recording_port(real: Any) -> Any:
            def opened(*args: Any) -> socket.socket:
                sock = real(*args)
                self.ports.append(sock.getsockname()[1])
                return sock

            return opened

        async def create_subprocess_exec(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
            proc = await real_exec(*args, **kwargs)
            self.processes.append(proc)
            return proc

        def start(embedded: EmbeddedDynamoDB) -> str:
            endpoint = real_start(embedded)
            self.ports.append(urlsplit(endpoint).port or 0)
            return endpoint

        monkeypatch.setattr(runtime_module, "_listening_socket", recording_port(real_listening))
        monkeypatch.setattr(stack_module, "_bind", recording_port(real_bind))
        monkeypatch.setattr(asyncio, "create_subprocess_exec", create_subprocess_exec)
        monkeypatch.setattr(EmbeddedDynamoDB, "start", start)

    def listening_ports(self) -> list[int]:
        open_ports = []
        for port in self.ports:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                continue
            open_ports.append(port)
        return open_ports

    def running_pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.returncode is None]


def test_a_late_part_that_fails_tears_down_every_part_started_before_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    opened = Opened(monkeypatch)
    # The state file is written after DynamoDB, the runtime, the gateway, the web server and the
    # pre-warmed workers have started: its directory cannot be made.
    config = test_config(min_workers=1, max_workers=1, state_dir=not_a_directory / "state")
    assert isinstance(start_failure(config), OSError)
    assert len(opened.processes) >= 2  # a worker per function was warm
    assert len(opened.ports) > len(opened.processes) + 3  # ws, web, DynamoDB, RIE and worker ports
    assert opened.running_pids() == []
    assert opened.listening_ports() == []


def test_a_web_port_in_use_leaves_nothing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        opened = Opened(monkeypatch)
        failure = start_failure(test_config(web_port=taken.getsockname()[1], min_workers=1))
        assert isinstance(failure, PortInUseError)
        assert len(opened.ports) == 1  # the WebSocket port, bound before the web port
        assert opened.listening_ports() == []
        assert opened.processes == []
