"""Child processes of tests and benchmarks: the one readiness signal (a JSON line ``{"event": "ready", ...}``
on stdout), read with a bound, and a stop that always ends the child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

__all__ = [
    "READY_EVENT",
    "StartError",
    "parse_ready_line",
    "read_ready_line",
    "stop_process",
    "wait_for_ready",
]

READY_EVENT = "ready"


class StartError(RuntimeError):
    """A child did not print its ready line in time, or exited first (its output is in the message)."""


def parse_ready_line(line: str) -> dict[str, Any] | None:
    """The ready line's fields, or None when ``line`` is not one."""
    line = line.strip()
    if not line.startswith("{") or READY_EVENT not in line:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("event") == READY_EVENT else None


def read_ready_line(
    proc: subprocess.Popen[str], timeout: float, *, what: str = "the child"
) -> dict[str, Any]:
    """Read ``proc``'s stdout (a pipe) until its ready line, within ``timeout`` s; lines before it are
    kept for the error. The rest of stdout is left unread: use this for children that print little."""
    assert proc.stdout is not None
    stdout = proc.stdout
    seen: list[str] = []
    found: list[dict[str, Any]] = []

    def read() -> None:
        for line in stdout:
            ready = parse_ready_line(line)
            if ready is not None:
                found.append(ready)
                return
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if found:
        return found[0]
    state = f"exited with {proc.poll()}" if proc.poll() is not None else f"not ready after {timeout:.0f} s"
    raise StartError(f"{what} {state}; its output:\n{''.join(seen)[-4000:]}")


def wait_for_ready(
    proc: subprocess.Popen[Any], log_path: Path, timeout: float, *, what: str, offset: int = 0
) -> dict[str, Any]:
    """Poll ``log_path`` (where ``proc`` writes its output, from byte ``offset`` on) for the ready line,
    within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pending = ""
    while True:
        with log_path.open("rb") as log:
            log.seek(offset)
            chunk = log.read()
            offset = log.tell()
        pending += chunk.decode("utf-8", errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            ready = parse_ready_line(line)
            if ready is not None:
                return ready
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    state = (
        f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout:.0f} s"
    )
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
    raise StartError(f"{what} {state}; the end of its output ({log_path}):\n{tail}")


def stop_process(
    proc: subprocess.Popen[Any], grace: float = 10.0, *, sig: int = signal.SIGTERM, group: bool = False
) -> int | None:
    """Stop a child for sure: close its stdin if it has one (the kit's servers exit on EOF), else send
    ``sig`` (to its process group with ``group``, for a child started with ``start_new_session``); after
    ``grace`` s each step escalates (``sig``, then SIGKILL). Returns its exit status."""
    if proc.poll() is not None:
        return proc.returncode

    def signal_it(which: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, which)
            else:
                proc.send_signal(which)
        except ProcessLookupError:
            pass

    steps: list[int | None] = [None, sig, signal.SIGKILL] if proc.stdin is not None else [sig, signal.SIGKILL]
    for step in steps:
        if step is None:
            proc.stdin.close()  # type: ignore[union-attr]
        else:
            signal_it(step)
        try:
            return proc.wait(grace if step != signal.SIGKILL else 30)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()
