"""Shared by every test folder: safe AWS defaults and loading a function's handler module by path."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS = ROOT / "lambdas"

# Never reach a real account from a test, whatever the developer's shell holds.
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION=os.environ.get("AWS_REGION", "us-east-1"),
    AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="ChatBackendTest",
    POWERTOOLS_SERVICE_NAME="chat-test",
)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_counter = itertools.count()


def load_function(name: str) -> ModuleType:
    """Import ``lambdas/<name>/app.py`` afresh (its cold start runs again), as the image's ``app`` module."""
    path = LAMBDAS / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_{next(_counter)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
