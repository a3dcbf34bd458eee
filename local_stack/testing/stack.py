"""Starting a local stack for tests and benchmarks: in this process (a thread, :func:`start_stack`) or
as a child process (``python -m local_stack up``, :class:`StackProcess`), on free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_JWT_SECRET, REPO_ROOT, StackConfig
from ..stack import Stack, StackThread
from ..tokens import make_token
from .process import stop_process, wait_for_ready

__all__ = ["StackProcess", "start_stack", "test_config"]

# What a test wants unless it says otherwise: free ports, no web server, no reload, quiet, no reaper.
TEST_DEFAULTS: dict[str, Any] = dict(
    ws_port=0, web_port=None, min_workers=1, reload=False, echo_logs=False, ttl_reaper_interval_s=0
)


def test_config(**overrides: Any) -> StackConfig:
    """A :class:`StackConfig` with the test defaults (``TEST_DEFAULTS``) under ``overrides``."""
    return StackConfig(**{**TEST_DEFAULTS, **overrides})


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a pytest test


@contextmanager
def start_stack(config: StackConfig | None = None, **overrides: Any) -> Iterator[Stack]:
    """``with start_stack(max_workers=2) as stack:`` runs the stack in a thread of this process (the
    test defaults under ``overrides``, or ``config`` as given) and stops it, every worker included."""
    thread = StackThread(config or test_config(**overrides))
    try:
        yield thread.__enter__()
    finally:
        thread.stop()


@dataclass
class StackProcess:
    """``python -m local_stack up`` as a child process, ready once it printed its ready line.

    ``args`` are extra ``up`` flags; ``env`` is added to this process's environment (``WS_PORT`` and
    ``WEB_PORT`` default to 0, free ports) and ``command`` replaces the
    whole command line, e.g. ``make dev``). Its output goes to ``log_path`` (a temporary file if none);
    ``echo_logs=False`` (``up --quiet``) leaves the functions' logs out of it, for a run that measures the
    stack and would otherwise write every invocation's log lines.
    After :meth:`start`, ``ready`` holds the ready line (``ws_url``, ``callback_url``, ``web_url``,
    ``dynamodb_endpoint``, ``state_file``, ``pid``, ...). :meth:`restart` comes back on the same ports.
    """

    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workers: int | None = None
    min_workers: int | None = None
    jwt_secret: str = DEFAULT_JWT_SECRET
    echo_logs: bool = True
    log_path: Path | None = None
    command: Sequence[str] | None = None
    start_timeout_s: float = 90.0
    stop_signal: int = signal.SIGTERM
    signal_group: bool = False  # send it to the whole process group (a terminal's Ctrl-C, ``make dev``)
    process: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    starts: int = 0
    returncode: int | None = None  # the exit status of its last stop
    _ports: dict[str, str] = field(default_factory=dict)
    _own_dir: Path | None = None  # the temporary folder it made for its log (removed on __exit__)

    def start(self) -> StackProcess:
        if self.log_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="local-stack-"))
            self.log_path = self._own_dir / "stack.log"
        state_dir = self.log_path.parent / "state"
        env = {
            **os.environ,
            "WS_PORT": "0",
            "WEB_PORT": "0",
            "JWT_SECRET": self.jwt_secret,
            "LOCAL_STACK_STATE_DIR": str(state_dir),
            "PYTHONUNBUFFERED": "1",
            **self.env,
            **self._ports,
        }
        if "DYNAMODB_ENDPOINT" not in self.env:  # its own embedded DynamoDB unless told otherwise
            env.pop("DYNAMODB_ENDPOINT", None)
        command = list(self.command or [sys.executable, "-m", "local_stack", "up", "--no-reload"])
        if self.command is None:
            if self.workers is not None:
                command += ["--workers", str(self.workers)]
            if self.min_workers is not None:
                command += ["--min-workers", str(self.min_workers)]
            if not self.echo_logs:
                command.append("--quiet")
            command += list(self.args)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(command)} =====\n".encode())
            log.flush()
            offset = log.tell()
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the test's terminal does not reach it first
            )
        try:
            self.ready = wait_for_ready(
                self.process, self.log_path, self.start_timeout_s, what="local stack", offset=offset
            )
        except BaseException:
            self.stop()
            raise
        ws_port = self.ws_url.rsplit(":", 1)[1].split("/", 1)[0]
        self._ports = {"WS_PORT": ws_port}
        if self.web_url:
            self._ports["WEB_PORT"] = self.web_url.rstrip("/").rsplit(":", 1)[1]
        return self

    def stop(self, grace: float = 30.0) -> int | None:
        """Stop it (``stop_signal``, then SIGKILL after ``grace`` s); its exit status. The stack closes every
        connection first (firing ``$disconnect``), and its workers die with it."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        self.returncode = stop_process(proc, grace, sig=self.stop_signal, group=self.signal_group)
        return self.returncode

    def restart(self) -> StackProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> StackProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_dir is not None and exc[0] is None:  # kept when the block failed: its log may tell why
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = self.log_path = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return str(self.ready["ws_url"])

    @property
    def callback_url(self) -> str:
        return str(self.ready["callback_url"])

    @property
    def web_url(self) -> str | None:
        return self.ready.get("web_url")

    @property
    def dynamodb_endpoint(self) -> str:
        return str(self.ready["dynamodb_endpoint"])

    def output(self) -> str:
        """Everything it printed so far (every start)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def token(self, user: str, *, room: str | None = None, name: str | None = None, ttl_s: int = 3600) -> str:
        return make_token(self.jwt_secret, user, room=room, name=name, ttl_s=ttl_s)[0]

    def url(self, user: str, room: str) -> str:
        """A client's WebSocket URL: ``user``'s token, joining ``room``."""
        return f"{self.ws_url}?token={self.token(user)}&room_id={room}"
