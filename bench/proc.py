"""Child processes of the benchmarks: read their first line with a bound, stop them for sure."""

from __future__ import annotations

import subprocess
import threading


def first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or "" if none came within ``timeout`` s (readline alone can block)."""
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def stop_process(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a child: close its stdin first if it has one (the bench servers exit on EOF) and give it
    ``grace`` s, then SIGTERM and ``grace`` s more, then SIGKILL."""
    if proc.stdin is not None:
        proc.stdin.close()
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
