"""The test kit (local_stack.testing) as a user meets it: the README example, `chat-local`, the children."""

from __future__ import annotations

import importlib
import re
import site
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest

from local_stack import DEFAULT_JWT_SECRET
from local_stack.testing import (
    FakeManagementApiProcess,
    MotoProcess,
    StackProcess,
    StartError,
    parse_ready_line,
)

from .helpers import REPO, connect

pytestmark = pytest.mark.timeout(180)


def run(*command: str | Path, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, **options)


def readme_example() -> str:
    readme = (REPO / "local_stack" / "README.md").read_text()
    section = readme.split("## How to run the stack from your own tests", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return block


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    # As a user runs it: a test file of their own, outside this repository, in a pytest of its own (so no
    # stack of this suite shares its process).
    (tmp_path / "test_example.py").write_text(readme_example())
    done = run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_example.py",
        cwd=tmp_path,
        timeout=150,
    )
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr


def test_chat_local_is_declared_and_resolves_to_the_cli() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    target = project["project"]["scripts"]["chat-local"]
    module, _, function = target.partition(":")
    assert (
        getattr(importlib.import_module(module), function) is importlib.import_module("local_stack.cli").main
    )
    packages = project["tool"]["setuptools"]["packages"]
    assert {"local_stack", "local_stack.testing"} <= set(packages)
    assert "local_stack" in project["tool"]["setuptools"]["package-data"]  # fault_site/ ships with it
    for package in packages:  # every package of local_stack is listed (a wheel would miss the others)
        assert (REPO / package.replace(".", "/") / "__init__.py").is_file()
    found = {
        str(p.parent.relative_to(REPO)).replace("/", ".") for p in (REPO / "local_stack").rglob("__init__.py")
    }
    assert found == set(packages)


def test_ready_line_is_told_from_other_lines() -> None:
    assert parse_ready_line('{"event": "ready", "ws_url": "ws://x"}\n') == {
        "event": "ready",
        "ws_url": "ws://x",
    }
    for line in ('{"level": "INFO", "message": "ready"}', "Local chat stack is ready", '{"event": "ready"'):
        assert parse_ready_line(line) is None


def test_a_stack_that_cannot_start_fails_fast_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(StartError) as failure:
        StackProcess(args=["--var", "no-equals-sign"], log_path=tmp_path / "stack.log").start()
    assert "exited with 2" in str(failure.value) and "--var needs NAME=VALUE" in str(failure.value)


@pytest.mark.parametrize("echo_logs", [True, False], ids=["echoed", "quiet"])
def test_stack_process_echoes_function_logs_unless_told_not_to(echo_logs: bool, tmp_path: Path) -> None:
    stack = StackProcess(echo_logs=echo_logs, log_path=tmp_path / "stack.log")
    with stack, connect(stack.url("alice", "general"), open_timeout=30) as ws:
        ws.send('{"action": "sendMessage", "message": "hi"}')
        assert '"hi"' in ws.recv(timeout=30)
    assert stack.returncode == 0
    lines = stack.output().splitlines()
    assert any(parse_ready_line(line) for line in lines)
    assert any("send_message" in line and "REPORT RequestId" in line for line in lines) is echo_logs


def test_fake_management_api_in_a_child_process_counts_and_answers() -> None:
    with FakeManagementApiProcess(latency=0.0) as api:
        for cid, status in (("abc", 200), ("gone-1", 410)):
            request = urllib.request.Request(
                f"{api.endpoint_url}/@connections/{cid}", data=b"hi", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == status
            except urllib.error.HTTPError as error:
                assert error.code == status and error.headers["x-amzn-ErrorType"] == "GoneException"
        assert api.stats()["posts"] == 2 and api.stats()["bytes"] == 4
        assert api.reset()["posts"] == 0
        proc = api.proc
    assert proc is not None and proc.poll() is not None  # stopped with its stdin closed


def test_chat_local_console_script_installs_from_this_checkout(tmp_path: Path) -> None:
    # Nothing is fetched: a venv without pip or setuptools of its own, seeing this one's packages through a
    # .pth file; this venv's pip installs into it (--no-deps, --no-build-isolation), its setuptools builds.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    [site_dir] = run(python, "-c", "import site; print(site.getsitepackages()[0])", check=True).stdout.split()
    (Path(site_dir) / "shared-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
    pip += ["--no-build-isolation", "--no-index"]
    done = run(*pip, "-e", REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    # cwd not the checkout: the command finds local_stack through the install
    token = run(venv / "bin" / "chat-local", "token", "--user", "alice", timeout=60, cwd=tmp_path)
    assert token.returncode == 0, token.stderr
    claims = jwt.decode(token.stdout.strip(), DEFAULT_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"


def test_moto_process_serves_until_its_parent_closes_it() -> None:
    with MotoProcess() as moto:
        assert moto.endpoint.startswith("http://127.0.0.1:") and moto.pid != 0
        with urllib.request.urlopen(f"{moto.endpoint}/moto-api/", timeout=10) as response:
            assert response.status == 200
        proc = moto.proc
    assert proc is not None and proc.poll() == 0  # it stopped when its standard input closed
