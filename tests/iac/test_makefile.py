"""The Makefile: deploy/destroy target addresses that exist in the module (terraform/ and examples/complete),
what each target installs, ARCH as the one architecture setting, buildx detection, no forced region."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from local_stack.hcl import Module, unquote
from tests.iac import ROOT

FUNCTIONS = sorted(p.parent.name for p in (ROOT / "lambdas").glob("*/app.py"))
PREFIX = "$(TF_TARGET_PREFIX)"


def _recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"the Makefile has no {target} target"
    return match.group(1)


def test_every_target_address_is_prefixed_and_exists(module: Module) -> None:
    assert re.search(r"^TF_TARGET_PREFIX \?=\s*$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    for target in ("deploy", "destroy"):
        addresses = re.findall(r"-target=(\S+)", _recipe(target))
        assert addresses, f"make {target} has no -target"
        for address in addresses:
            assert address.startswith(PREFIX), f"make {target}: {address} ignores TF_TARGET_PREFIX"
            assert address.removeprefix(PREFIX) in module.resources, f"make {target}: no {address}"


def test_the_example_calls_the_module_as_the_documented_prefix(example: Module) -> None:
    readme = (ROOT / "terraform" / "README.md").read_text()
    assert "make deploy TF_DIR=terraform/examples/complete TF_TARGET_PREFIX=module.chat." in readme
    assert "chat" in example.modules


def test_destroy_vars_are_declared_by_every_root(module: Module, example: Module) -> None:
    names = set(re.findall(r"-var (\w+)=", _recipe("destroy")))
    assert names
    for root in (module, example):
        assert names <= set(root.variables), f"{root.directory}: make destroy passes undeclared variables"


def test_no_arn_hard_codes_the_aws_partition(module: Module, example: Module) -> None:
    for root in (module, example):
        for address, body in {**root.resources, **root.modules}.items():
            assert "arn:aws:" not in str(body), (
                f"{root.directory}: {address} hard-codes arn:aws: (use data.aws_partition)"
            )


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", *args]  # env None: this process's environment
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_make_dev_installs_the_local_lock_and_make_test_the_dev_lock() -> None:
    dev = _make("-n", "-B", "dev").stdout
    assert "-r requirements/local.txt" in dev and "requirements/dev.txt" not in dev, dev
    installs = [line for line in dev.splitlines() if " -m pip install " in line]
    locked = [line for line in installs if "--require-hashes" in line]
    itself = [line for line in installs if line.endswith("-e .") and "--no-deps" in line]
    # Dependencies only from the hashed lock; then the checkout itself (chat-local), editable, no deps.
    assert locked and len(itself) == 1 and len(locked) + len(itself) == len(installs), dev
    assert "--quiet" not in dev, "the first install must show its progress"
    for target in ("test", "lint", "bench"):
        assert "-r requirements/dev.txt" in _make("-n", "-B", target).stdout, target


@pytest.mark.parametrize(("arch", "platform"), [("x86_64", "linux/amd64"), ("arm64", "linux/arm64")])
def test_arch_sets_the_docker_platform(arch: str, platform: str) -> None:
    out = _make("-n", "build", f"ARCH={arch}").stdout
    assert f"--platform {platform} " in out, out


def test_arch_defaults_to_the_modules_architecture(module: Module) -> None:
    default = unquote(module.variables["architecture"]["default"])
    assert re.search(rf"^ARCH \?= {default}$", (ROOT / "Makefile").read_text(), re.MULTILINE)


def test_a_bad_arch_or_a_platform_of_its_own_is_refused() -> None:
    bad = _make("build", "ARCH=amd64")
    assert bad.returncode != 0 and "ARCH must be x86_64 or arm64, got 'amd64'" in bad.stdout + bad.stderr
    split = _make("build", "PLATFORM=linux/arm64")
    assert split.returncode != 0 and "use ARCH=" in split.stdout + split.stderr


def _fake_tools(bin_dir: Path, log: Path, *, buildx: bool = True) -> dict[str, str]:
    """docker, terraform and aws stand-ins that append their arguments and AWS_REGION to ``log``."""
    bin_dir.mkdir()
    repos = {fn: f"123456789012.dkr.ecr.eu-west-3.amazonaws.com/ws-chat-{fn}" for fn in FUNCTIONS}
    no_buildx = "echo \"docker: 'buildx' is not a docker command.\" >&2; exit 1"
    scripts = {
        "docker": f"""
            echo "docker $* region=${{AWS_REGION-unset}}" >> {log}
            case "$1" in
              buildx) {"exit 0" if buildx else no_buildx} ;;
              inspect) echo "${{@: -1}}" | sed 's/:[^:]*$//' | sed 's/$/@sha256:{"ab" * 32}/' ;;
            esac""",
        "terraform": f"""
            echo "terraform $* region=${{AWS_REGION-unset}}" >> {log}
            echo '{json.dumps(repos)}'""",
        "aws": f"""
            echo "aws $* region=${{AWS_REGION-unset}}" >> {log}
            echo password""",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body).strip() + "\n")
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def test_build_without_buildx_says_so(tmp_path: Path) -> None:
    env = _fake_tools(tmp_path / "bin", tmp_path / "calls.log", buildx=False)
    result = _make("build", env=env)
    assert result.returncode != 0
    assert "make build needs docker buildx" in result.stdout + result.stderr
    assert "docker build " not in (tmp_path / "calls.log").read_text(), "it must stop before building"


@pytest.mark.parametrize("declares_architecture", [True, False])
def test_build_push_uses_the_registrys_region_and_writes_the_architecture(
    tmp_path: Path, declares_architecture: bool
) -> None:
    tf_dir = tmp_path / "tf"
    tf_dir.mkdir()
    if declares_architecture:
        (tf_dir / "variables.tf").write_text('variable "architecture" {\n  type = string\n}\n')
    log = tmp_path / "calls.log"
    env = _fake_tools(tmp_path / "bin", log)
    result = _make("build-push", f"TF_DIR={tf_dir}", "ARCH=arm64", env=env)
    calls = log.read_text() if log.exists() else ""
    if not declares_architecture:
        # Images for arm64 and a root that cannot deploy them as arm64: refused before anything is built.
        assert result.returncode != 0, result.stdout
        assert 'declares no variable "architecture"' in result.stdout, result.stdout
        assert "docker push" not in calls
        return
    assert result.returncode == 0, result.stdout + result.stderr
    assert "region=unset" in calls and "us-east-1" not in calls, "the Makefile must not force a region"
    assert "aws ecr get-login-password --region eu-west-3 " in calls, calls
    assert "--platform linux/arm64" in calls
    written = json.loads((tf_dir / "image-digests.auto.tfvars.json").read_text())
    assert written["architecture"] == "arm64"
    assert set(written["image_digests"]) == set(FUNCTIONS)
    assert all(d == "sha256:" + "ab" * 32 for d in written["image_digests"].values())


def test_destroy_lifts_deletion_protection_of_every_table(module: Module) -> None:
    """destroy's first apply turns deletion protection off; a table it leaves out fails the destroy."""
    targeted = {a.removeprefix(PREFIX) for a in re.findall(r"-target=(\S+)", _recipe("destroy"))}
    protected = {a for a, body in module.resources.items() if "deletion_protection_enabled" in str(body)}
    assert protected, "no table has deletion protection: the check would prove nothing"
    assert protected <= targeted, f"make destroy leaves deletion protection on {sorted(protected - targeted)}"
