from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local_stack.hcl import Evaluator, Module
from tests.iac import EXAMPLE_DIR, MODULE_DIR, ROOT, function_keys

SEED_DIR = Path(__file__).parent / "fixtures" / "seed"

# What examples/complete passes (and make build-push writes): the values an actual apply sees.
DIGEST = "sha256:" + "ab" * 32
COMPLETE_VARIABLES: dict[str, Any] = {
    "image_digests": {name: DIGEST for name in function_keys()},
    "jwt_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:chat-jwt-AbCdEf",
    "jwt_secret_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:chat-alarms",
}


@pytest.fixture(scope="session")
def module() -> Module:
    return Module.load(MODULE_DIR)


@pytest.fixture(scope="session")
def example() -> Module:
    return Module.load(EXAMPLE_DIR)


@pytest.fixture(scope="session")
def seed() -> Module:
    return Module.load(SEED_DIR)


@pytest.fixture(scope="session")
def defaults(module: Module) -> Evaluator:
    return Evaluator(module, module.defaults())


@pytest.fixture(scope="session")
def complete(module: Module) -> Evaluator:
    return Evaluator(module, {**module.defaults(), **COMPLETE_VARIABLES})


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run tests/unit (and the JWT_SECRET_ARN scenario) with the recorder plugin; return what it saw."""
    output = tmp_path_factory.mktemp("aws-calls") / "calls.json"
    env = {**os.environ, "AWS_CALLS_OUTPUT": str(output)}
    args = ["tests/unit", "tests/iac/scenario_secret_arn.py", "-q", "-x", "-p", "tests.iac.aws_calls"]
    command = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"]
    # A hang guard, not a speed check: the run takes ~5 min on 2 idle cores and took 605 s once under load.
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"the recorded run failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    recorded: dict[str, Any] = json.loads(output.read_text())
    return recorded
